"""time travel: the subject index on the log ordered by position

Revision ID: 0014_travel_subject_position
Revises: 0013_source_claims_index
Create Date: 2026-12-03 17:00:00

A cut from a snapshot asks the log only for the subject's claims made between the snapshot and the cut.
Migration 0006's index on the subject each ClaimMade names held no position (on PostgreSQL), so every cut
read the heap row of every claim ever made about the subject (4,894 rows, 4,725 pages for the hot subject
of a 1,000,000-event log) to keep the few hundred in range. Here the index is on (subject, position), the
stream beside them, so that range is read from the index alone. It replaces 0006's: a write still updates
one index for a ClaimMade.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014_travel_subject_position"
down_revision: str | None = "0013_source_claims_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of timeline.store.schema's expressions: migrations must not change meaning with the code.
OLD = "ix_events_claim_subject"
NEW = "ix_events_claim_subject_at"
SUBJECT_NAMED = {
    "sqlite": "json_extract(data, '$.subject_id')",
    "postgresql": "(data::jsonb ->> 'subject_id')",
}


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    columns = f"{SUBJECT_NAMED[dialect]}, position"
    # PostgreSQL carries the stream in the index's leaf (INCLUDE); SQLite has no INCLUDE, a third column.
    shape = f"({columns}) INCLUDE (stream_id)" if dialect == "postgresql" else f"({columns}, stream_id)"
    op.execute(f"CREATE INDEX {NEW} ON events {shape} WHERE type = 'ClaimMade'")
    op.drop_index(OLD, table_name="events")


def downgrade() -> None:
    expression = SUBJECT_NAMED[op.get_bind().dialect.name]
    op.execute(f"CREATE INDEX {OLD} ON events ({expression}, stream_id) WHERE type = 'ClaimMade'")
    op.drop_index(NEW, table_name="events")
