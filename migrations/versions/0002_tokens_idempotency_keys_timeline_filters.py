"""tokens, idempotency keys, timeline filters

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:49:24.636360
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The views' stored shapes change in this revision (claims keep every event's position, timeline rows
# gain source and kind). Views are derived data: they are emptied here and `timeline serve` (or
# `timeline rebuild`) refolds them from the log, which this migration does not touch.
VIEWS = ("claims", "estimates", "timeline", "registrations", "projection_checkpoints")


def upgrade() -> None:
    for table in VIEWS:
        op.execute(sa.text(f"DELETE FROM {table}"))
    op.create_table(
        "idempotency_keys",
        sa.Column("principal", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("principal", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_table(
        "tokens",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_tokens_token_hash")),
    )
    with op.batch_alter_table("timeline", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_id", sa.String(length=200), nullable=False))
        batch_op.add_column(sa.Column("kind", sa.String(length=20), nullable=False))


def downgrade() -> None:
    for table in VIEWS:
        op.execute(sa.text(f"DELETE FROM {table}"))
    with op.batch_alter_table("timeline", schema=None) as batch_op:
        batch_op.drop_column("kind")
        batch_op.drop_column("source_id")

    op.drop_table("tokens")
    op.drop_table("idempotency_keys")
