"""asynchronous projections: the failure their leader met, on their checkpoint row

Revision ID: 0017_projection_failure
Revises: 0016_append_function
Create Date: 2026-12-04 19:00:00

``timeline serve`` on PostgreSQL runs the asynchronous projections in a process of its own, so an API
process's /health no longer sees a projection fail in its own worker. The leader writes the failure (one
that is not the database's passing fault) on the projection's checkpoint row, and the next batch that
commits clears it with its checkpoint, so every process's /health names a stuck projection at once.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017_projection_failure"
down_revision: str | None = "0016_append_function"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("projection_checkpoints", sa.Column("failure", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("projection_checkpoints", "failure")
