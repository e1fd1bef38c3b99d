"""the append function stores the answers to a write's idempotency keys too

Revision ID: 0020_append_answers
Revises: 0019_snapshot_compression
Create Date: 2026-12-05 06:00:00

A write with an Idempotency-Key always ran under the log's lock, in six round trips (BEGIN with the lock, the
read, the keys' read, their answers' insert, the write, COMMIT), because ``timeline_append`` (0016) could not
store the answers: without a transaction of its own a write may send one statement that writes. The function
now takes them as five more arrays ($57-$61, before the views' row version, now $62) and inserts them with the
events, so a keyed write is its read, its keys' read and this call. A key another process answered between
that read and the call fails it on the keys' primary key: nothing is written, and the write runs again under
the lock, where it finds the answer. The new function has more arguments, so it is an overload beside the old
one, which is kept: a server still running the code before this migration (several API processes upgraded one
at a time) keeps calling it, and the tables it writes are unchanged. The text is frozen here as
``timeline.store.statements`` gave it; a test compares the two. Nothing on SQLite, whose statements run in
process.
"""

# ruff: noqa: E501 (the function's text, frozen as it was generated)

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020_append_answers"
down_revision: str | None = "0019_snapshot_compression"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ARGUMENTS = (
    "text[], text[], text[], text[], text[], int[], bigint[], bigint[], text[], text[], text[], text[], "
    "text[], text[], text[], text[], text[], text[], text[], bigint[], text[], bigint[], bigint[], "
    "text[], date[], text[], text[], text[], text, bigint, timestamptz, boolean, bigint[], uuid[], "
    "text[], int[], text[], int[], text[], text[], date[], timestamptz[], text[], text[], text[], int[], "
    "int[], text[], smallint[], bigint[], bytea[], bigint, text, timestamptz, text, bigint, text[], "
    "text[], text[], int[], text[], bigint"
)

BODY = """
DECLARE
  _head bigint;
  _hash text;
  _sent bigint;
BEGIN
  LOCK TABLE events IN EXCLUSIVE MODE;
  SELECT position, hash INTO _head, _hash FROM events ORDER BY position DESC LIMIT 1;
  IF coalesce(_head, 0) <> $33[1] - 1 OR _hash <> $43[1] THEN
    RAISE EXCEPTION 'the log moved on: it ends at position %, not %', coalesce(_head, 0), $33[1] - 1
      USING ERRCODE = 'TL409';
  END IF;
  IF (SELECT xmin::text::bigint FROM projection_checkpoints WHERE name = $29)
      IS DISTINCT FROM $62 THEN
    RAISE EXCEPTION 'the views were rewritten since this write read them' USING ERRCODE = 'TL409';
  END IF;
WITH appended AS (
  INSERT INTO events (position, event_id, stream_id, stream_version, type, schema_version, data, metadata, valid_from, recorded_at, prev_hash, hash)
  SELECT * FROM unnest($33::bigint[], $34::uuid[], $35::text[], $36::int[], $37::text[], $38::int[],
                       $39::text[], $40::text[], $41::date[], $42::timestamptz[], $43::text[], $44::text[])
), kept AS (
  INSERT INTO stream_records (stream_id, version, format, state)
  SELECT * FROM unnest($45::text[], $46::int[], $47::int[], $48::text[])
  ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, format = excluded.format,
    state = excluded.state
), grown AS (
  INSERT INTO tree_nodes (level, idx, hash) SELECT * FROM unnest($49::smallint[], $50::bigint[], $51::bytea[])
), resigned AS (
  DELETE FROM log_checkpoints WHERE size = $56::bigint
), signed AS (
  INSERT INTO log_checkpoints (size, root_hash, recorded_at, note)
  SELECT $52::bigint, $53::text, $54::timestamptz, $55::text WHERE $52::bigint IS NOT NULL
  ON CONFLICT (size) DO NOTHING
), answered AS (
  INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response, created_at)
  SELECT k.*, $31::timestamptz
  FROM unnest($57::text[], $58::text[], $59::text[], $60::int[], $61::text[]) AS k
), claimed AS (
  INSERT INTO claims (claim_id, subject_id, source_id, metric, status, version, made_position, updated_position, state)
  SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[],
                       $7::bigint[], $8::bigint[], $9::text[])
  ON CONFLICT (claim_id) DO UPDATE SET subject_id = excluded.subject_id, source_id = excluded.source_id,
    metric = excluded.metric, status = excluded.status, version = excluded.version,
    made_position = excluded.made_position, updated_position = excluded.updated_position,
    state = excluded.state
), unchosen AS (
  DELETE FROM estimates e USING unnest($10::text[], $11::text[], $12::text[]) AS k(s, m, src)
  WHERE e.subject_id = k.s AND e.metric = k.m AND e.source_id = k.src
), chosen AS (
  INSERT INTO estimates (subject_id, metric, source_id, asserted_claim_id, projected_claim_id)
  SELECT * FROM unnest($13::text[], $14::text[], $15::text[], $16::text[], $17::text[])
  ON CONFLICT (subject_id, metric, source_id) DO UPDATE SET asserted_claim_id = excluded.asserted_claim_id,
    projected_claim_id = excluded.projected_claim_id
), defined AS (
  INSERT INTO registrations (stream_id, kind, position, definition)
  SELECT * FROM unnest($18::text[], $19::text[], $20::bigint[], $21::text[])
  ON CONFLICT (stream_id) DO UPDATE SET kind = excluded.kind, position = excluded.position,
    definition = excluded.definition
), unlisted AS (
  DELETE FROM timeline t USING unnest($22::bigint[]) AS u(p) WHERE t.position = u.p
), listed AS (
  INSERT INTO timeline (position, subject_id, occurred_on, source_id, kind, entry)
  SELECT * FROM unnest($23::bigint[], $24::text[], $25::date[], $26::text[], $27::text[], $28::text[])
  ON CONFLICT (position) DO UPDATE SET subject_id = excluded.subject_id, occurred_on = excluded.occurred_on,
    source_id = excluded.source_id, kind = excluded.kind, entry = excluded.entry
), checked AS (
  INSERT INTO projection_checkpoints (name, position, updated_at)
  SELECT $29::text, $30::bigint, $31::timestamptz WHERE $29::text IS NOT NULL
  ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at
)
SELECT count(*) INTO _sent FROM (SELECT pg_notify('timeline_events', '') WHERE $32::boolean) AS notified;
  RETURN _sent;
END
"""

CREATE = (
    f"CREATE OR REPLACE FUNCTION timeline_append({ARGUMENTS}) RETURNS bigint\n"
    f"LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $append${BODY}$append$"
)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # To the driver as it is: the body's $n and colons are not bind parameters.
        op.get_bind().exec_driver_sql(CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(f"DROP FUNCTION timeline_append({ARGUMENTS})"))
