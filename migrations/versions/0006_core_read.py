"""index each claim's subject on the event table

Revision ID: 0006_core_read
Revises: 0005
Create Date: 2026-12-02 23:00:00

Time travel on a subject finds its claims in the log itself, through the subject each ClaimMade names (an
expression index over just those events), rather than through the claims view, which it must not trust.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006_core_read"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of timeline.store.schema's expressions: migrations must not change meaning with the code.
INDEX = "ix_events_claim_subject"
SUBJECT_NAMED = {
    "sqlite": "json_extract(data, '$.subject_id')",
    "postgresql": "(data::jsonb ->> 'subject_id')",
}


def upgrade() -> None:
    expression = SUBJECT_NAMED[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX {INDEX} ON events ({expression}, stream_id) WHERE type = 'ClaimMade'")


def downgrade() -> None:
    op.drop_index(INDEX, table_name="events")
