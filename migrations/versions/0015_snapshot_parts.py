"""time travel: a snapshot's parts stored apart, each with its own hash under the digest

Revision ID: 0015_snapshot_parts
Revises: 0014_travel_subject_position
Create Date: 2026-12-04 02:00:00

A snapshot was one value: the claims every cut reads, then what only an ``as_of`` cut reads, so a
``known_at`` cut on the hot subject of a 1,000,000-event log read and hashed 12 MB to use 7.5 MB, and
knowing which streams changed between two snapshots meant decoding both. Now the claims (``state``), the
``as_of`` part (``earlier``) and each claim's stream version (``versions``, small) are columns of their own;
``parts`` holds the SHA-256 of each and the digest is over ``parts``, so any one of them is read and checked
alone. The table is a cache derived from the log (the projector takes snapshots again as it follows the
log, and ``timeline rebuild`` takes them all; time travel folds from the log until then): it is recreated
empty in the new shape rather than converted, and the projector's checkpoint for it is dropped, so the
projector follows the log from its start again and takes every subject's snapshots anew.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015_snapshot_parts"
down_revision: str | None = "0014_travel_subject_position"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create(*parts: sa.Column[bytes] | sa.Column[str]) -> None:
    op.create_table(
        "time_travel_snapshots",
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("position", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("format", sa.Integer(), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        *parts,
        sa.PrimaryKeyConstraint("subject_id", "position", name="pk_time_travel_snapshots"),
    )


# Frozen: the name timeline.store.snapshots.Taker checkpoints under.
PROJECTION = "time_travel_snapshots"


def _forget_checkpoint() -> None:
    op.execute(sa.text("DELETE FROM projection_checkpoints WHERE name = :name").bindparams(name=PROJECTION))


def upgrade() -> None:
    _forget_checkpoint()
    op.drop_table("time_travel_snapshots")
    _create(
        sa.Column("parts", sa.String(200), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.Column("earlier", sa.LargeBinary(), nullable=False),
        sa.Column("versions", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    _forget_checkpoint()  # the table comes back empty: the projector takes the old shape's anew
    op.drop_table("time_travel_snapshots")
    _create(sa.Column("state", sa.LargeBinary(), nullable=False))
