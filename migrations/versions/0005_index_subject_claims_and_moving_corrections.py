"""index the claims of a subject and the corrections that move claims

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 10:00:00

Time travel on a subject reads the ids of its claims (now covered by an index, instead of a lookup of
each claim's whole row) and the claims a correction moved away from it or onto it (a partial index over
just those corrections, which are rare, instead of a scan of every event in the log on each such read).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of timeline.store.schema.MOVES_SUBJECT: migrations must not change meaning with the code.
MOVES_SUBJECT = sa.text("type = 'RecordCorrected' AND data LIKE '%\"subject_id\"%'")


def upgrade() -> None:
    op.create_index(op.f("ix_claims_subject_id_claim_id"), "claims", ["subject_id", "claim_id"])
    op.create_index(
        "ix_events_moves_subject",
        "events",
        ["stream_id"],
        sqlite_where=MOVES_SUBJECT,
        postgresql_where=MOVES_SUBJECT,
    )


def downgrade() -> None:
    op.drop_index("ix_events_moves_subject", table_name="events")
    op.drop_index(op.f("ix_claims_subject_id_claim_id"), table_name="claims")
