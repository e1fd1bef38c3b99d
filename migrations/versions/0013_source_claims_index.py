"""an index for a source's claims

Revision ID: 0013_source_claims_index
Revises: 0012_fewer_pages_per_write
Create Date: 2026-12-03 14:40:00

``GET /sources/{id}/claims`` pages through a source's claims in the order they were made (``source_id = ?
AND made_position > ? ORDER BY made_position``); no index served it, so every page read the whole claims
table on SQLite (and a whole index on PostgreSQL). A claim-making write pays one more b-tree page for it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013_source_claims_index"
down_revision: str | None = "0012_fewer_pages_per_write"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_claims_source_id_made_position"


def upgrade() -> None:
    op.create_index(INDEX, "claims", ["source_id", "made_position"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="claims")
