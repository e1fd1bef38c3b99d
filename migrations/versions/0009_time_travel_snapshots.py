"""snapshots of a subject's folded claims by log position, for time travel

Revision ID: 0009_time_travel_snapshots
Revises: 0008_core_views
Create Date: 2026-12-03 10:30:00

A derived cache kept by the asynchronous projector: time travel starts from the latest snapshot at or
before its cut (once it has checked it against the log) and folds only what came after. The table starts
empty; the projector fills it as it follows the log, and time travel folds from the log until then.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_time_travel_snapshots"
down_revision: str | None = "0008_core_views"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "time_travel_snapshots",
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", "position", name="pk_time_travel_snapshots"),
    )


def downgrade() -> None:
    op.drop_table("time_travel_snapshots")
