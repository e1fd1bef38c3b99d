"""estimates keep a source's latest asserted figure and its latest projection apart

Revision ID: 0010_estimates_by_kind
Revises: 0009_time_travel_snapshots
Create Date: 2026-12-03 10:30:00

A row of ``estimates`` named one claim per (subject, metric, source), whichever figure was touched last in
the log, so a projection could displace an assertion and the answer depended on recording order. Each row
now names the source's latest asserted figure and its latest projection (either may be null), ranked by a
rule that does not look at the log order. The views are emptied: `timeline serve` / `timeline rebuild`
refold them in the new shape.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_estimates_by_kind"
down_revision: str | None = "0009_time_travel_snapshots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _empty_views()
    op.drop_table("estimates")
    op.create_table(
        "estimates",
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("asserted_claim_id", sa.String(200), nullable=True),
        sa.Column("projected_claim_id", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("subject_id", "metric", "source_id", name=op.f("pk_estimates")),
    )


def downgrade() -> None:
    _empty_views()
    op.drop_table("estimates")
    op.create_table(
        "estimates",
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("metric", sa.String(200), nullable=False),
        sa.Column("source_id", sa.String(200), nullable=False),
        sa.Column("claim_id", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("subject_id", "metric", "source_id", name=op.f("pk_estimates")),
    )


def _empty_views() -> None:
    for table in ("claims", "estimates", "timeline", "registrations"):
        op.execute(sa.text(f"DELETE FROM {table}"))
    op.execute(sa.text("DELETE FROM projection_checkpoints WHERE name = 'views'"))
