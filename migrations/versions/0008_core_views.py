"""per-stream records for the write path; claim rows hold current state only

Revision ID: 0008_core_views
Revises: 0007_audit_proofs
Create Date: 2026-12-03 07:00:00

The rules read each stream's state from one small row (its version and folded state) instead of folding the
whole stream from the log on every write. The table starts empty: a writer catches a missing or lagging
record up from the log, so no backfill is needed.

A claims row no longer keeps the claim's every event and their positions (the history is in the log): the
views are emptied, and `timeline serve` / `timeline rebuild` refold them in the new shape.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_core_views"
down_revision: str | None = "0007_audit_proofs"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_records",
        sa.Column("stream_id", sa.String(200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", name="pk_stream_records"),
    )
    _empty_views()


def _empty_views() -> None:
    for table in ("claims", "estimates", "timeline", "registrations"):
        op.execute(sa.text(f"DELETE FROM {table}"))
    op.execute(sa.text("DELETE FROM projection_checkpoints WHERE name = 'views'"))


def downgrade() -> None:
    op.drop_table("stream_records")
    _empty_views()
