"""source activity counts a source's statements and the denials it withdrew

Revision ID: 0011_activity_counts_statements
Revises: 0010_estimates_by_kind
Create Date: 2026-12-03 12:10:00

``source_activity`` counted claims made, denials, confirmations and evidence, but not ``StatementMade`` nor
``DenialWithdrawn``. Two counters are added; the projection is emptied and its checkpoint forgotten, so its
leader recounts every source from the log (the existing rows lack the new counts).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_activity_counts_statements"
down_revision: str | None = "0010_estimates_by_kind"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("statements", "denials_withdrawn")


def upgrade() -> None:
    _empty_activity()
    with op.batch_alter_table("source_activity", schema=None) as batch_op:
        for column in COLUMNS:
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    _empty_activity()
    with op.batch_alter_table("source_activity", schema=None) as batch_op:
        for column in COLUMNS:
            batch_op.drop_column(column)


def _empty_activity() -> None:
    op.execute(sa.text("DELETE FROM source_activity"))
    op.execute(sa.text("DELETE FROM projection_checkpoints WHERE name = 'source_activity'"))
