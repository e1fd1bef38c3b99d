"""time travel's snapshot taker: each subject's count since its latest snapshot, kept with its checkpoint

Revision ID: 0018_snapshot_counts
Revises: 0017_projection_failure
Create Date: 2026-12-04 21:00:00

A taker that first met a subject (after every restart) counted the subject's events since its latest
snapshot from the log: on a log of 1,000,000 events with 200 subjects, about a minute of PostgreSQL's time
at each start, while the writes it shares the cores with ran. The count is now written with the taker's
batch, and a snapshot that came due is marked until it is stored, so a restart reads both back.

The counts of a log that a taker has already processed are filled here as the taker would have counted them
up to its checkpoint (each claim's events after its subject's latest snapshot, counted with the subject the
claim was made about and, for a correction naming a new subject, with that one too); without a checkpoint
there is nothing to fill.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018_snapshot_counts"
down_revision: str | None = "0017_projection_failure"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SUBJECT = {
    "sqlite": "json_extract(data, '$.subject_id')",
    "postgresql": "(data::jsonb ->> 'subject_id')",
}
_MOVED_TO = {
    "sqlite": "json_extract(data, '$.changes.subject_id')",
    "postgresql": "(data::jsonb -> 'changes' ->> 'subject_id')",
}


def upgrade() -> None:
    op.create_table(
        "time_travel_counts",
        sa.Column("subject_id", sa.String(200), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("subject_id", name="pk_time_travel_counts"),
    )
    dialect = op.get_bind().dialect.name
    # Each event of a claim counts for the subject the claim was made about, and a correction naming a new
    # subject for that one too, as the taker counts them.
    op.execute(
        f"""
INSERT INTO time_travel_counts (subject_id, events)
SELECT named.subject_id, count(*)
FROM (
    SELECT e.position, made.subject_id
    FROM (SELECT stream_id, {_SUBJECT[dialect]} AS subject_id FROM events WHERE type = 'ClaimMade') AS made
      JOIN events e ON e.stream_id = made.stream_id
    UNION ALL SELECT position, {_MOVED_TO[dialect]} FROM events WHERE type = 'RecordCorrected'
  ) AS named
  LEFT JOIN (
    SELECT subject_id, max(position) AS position FROM time_travel_snapshots GROUP BY subject_id
  ) AS latest ON latest.subject_id = named.subject_id
WHERE named.subject_id IS NOT NULL
  AND named.position > coalesce(latest.position, 0)
  AND named.position <= (SELECT position FROM projection_checkpoints WHERE name = 'time_travel_snapshots')
GROUP BY named.subject_id"""
    )


def downgrade() -> None:
    op.drop_table("time_travel_counts")
