"""on SQLite, a checkpoint's size is the table's rowid

Revision ID: 0012_checkpoints_rowid
Revises: 0011_activity_counts_statements
Create Date: 2026-12-03 14:00:00

Every commit inserts one row into ``log_checkpoints``. Its BIGINT primary key made SQLite keep a second
b-tree beside the table (an automatic unique index), written by every commit; a column declared INTEGER that
is the whole primary key is the rowid instead, so the row goes into one b-tree. The table is copied into that
shape with its rows; PostgreSQL keeps its BIGINT key.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_checkpoints_rowid"
down_revision: str | None = "0011_activity_counts_statements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    _size_as(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _size_as(sa.Integer(), sa.BigInteger())


def _size_as(before: sa.types.TypeEngine[int], after: sa.types.TypeEngine[int]) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    with op.batch_alter_table("log_checkpoints", recreate="always") as batch_op:
        batch_op.alter_column(
            "size", existing_type=before, type_=after, existing_nullable=False, autoincrement=False
        )
