"""The SQL text of the write path's and the fold's statements, per dialect, which ``store.driver`` sends.

Each is fixed text whose lists travel as one parameter (a PostgreSQL array, a JSON array for SQLite's
``json_each``), so the driver prepares it once per connection whatever the batch's size.

On PostgreSQL a list is looked up one element at a time, ``unnest`` of it joined LATERAL to a subquery
that the planner may not flatten (OFFSET 0, LIMIT), so each element is an index lookup whatever the plan.
The write runs generic plans (``store.database``), made once per connection from the statistics of the
moment: an array parameter's ``= ANY($n)`` cannot be hashed, and a sequential scan tested every row
against every element (the read of a batch of 100 took 9.6 ms under that plan in a fresh database's first
thousands of events, 1.5 ms joined on ``unnest``: bench/results-2026-12-04-write-plans.txt); a plain join on
``unnest`` was planned, on a connection whose first write met empty tables, as a hash join over a
sequential scan of the whole table, kept for that connection's life (auto_explain of a single write after
300: every event and every claim read again; bench/results-2026-12-04-unlocked-appends.txt).
"""

from __future__ import annotations

import re

from timeline.store.notify import CHANNEL

EVENT_COLUMNS = (
    "position, event_id, stream_id, stream_version, type, schema_version, data, metadata, valid_from, "
    "recorded_at, prev_hash, hash"
)

# What a writer reads: each stream's record (part 3) and its events after the record's version (part 0, most
# often none), the first event of streams whose existence it checks (1), the log's head (2), ordered so each
# stream's events come in version order. A record of another format counts as none. With them, the claim
# rows the views will need (saving the views' own query): claims by id (4), and the claims chosen under some
# estimate keys and under those claims' own keys (5).
_RECORD = "NULL, NULL, r.stream_id, r.version, NULL, NULL, r.state, NULL, NULL, NULL, NULL, NULL"
_CLAIM = "NULL, NULL, c.claim_id, NULL, NULL, NULL, c.state, NULL, NULL, NULL, NULL, NULL"
# With the head (part 6, PostgreSQL), the row version (xmin) of the views' checkpoint, which every write of
# the views rewrites: an append without a transaction of its own checks it has not changed since (below).
VIEWS_CHECKPOINT = "views"
# A probed stream that exists (part 1): only its id. Looked up one id at a time (LATERAL): joined, a generic
# plan made while the table's statistics were stale scanned every stream's first event for a write's
# three probes (1,003 rows, 84 of the read's 99 buffers, 0.19 of its 0.28 ms, a log of 1,000 claims).
_PROBED = "NULL, NULL, p.s, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
VIEWS_SEEN_PART = 6
_VIEWS_SEEN = "xmin::text::bigint, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
READ_FOR_WRITE = {
    "postgresql": f"""
SELECT 0, e.position, e.event_id, e.stream_id, e.stream_version, e.type, e.schema_version, e.data,
  e.metadata, e.valid_from, e.recorded_at, e.prev_hash, e.hash
FROM unnest($1::text[]) AS w(s)
  CROSS JOIN LATERAL (
    SELECT coalesce(max(version), 0) AS version FROM stream_records WHERE stream_id = w.s AND format = $4
  ) AS r
  CROSS JOIN LATERAL (
    SELECT * FROM events WHERE stream_id = w.s AND stream_version > r.version OFFSET 0
  ) AS e
UNION ALL SELECT 1, {_PROBED} FROM unnest($2::text[]) AS p(s)
  CROSS JOIN LATERAL (SELECT FROM events WHERE stream_id = p.s AND stream_version = 1 LIMIT 1) AS found
UNION ALL (SELECT 2, {EVENT_COLUMNS} FROM events WHERE $3::boolean ORDER BY position DESC LIMIT 1)
UNION ALL SELECT 6, {_VIEWS_SEEN} FROM projection_checkpoints
  WHERE $3::boolean AND name = '{VIEWS_CHECKPOINT}'
UNION ALL SELECT 3, {_RECORD} FROM unnest($1::text[]) AS w(s)
  CROSS JOIN LATERAL (SELECT * FROM stream_records WHERE stream_id = w.s AND format = $4 OFFSET 0) AS r
UNION ALL SELECT 4, {_CLAIM} FROM unnest($5::text[]) AS i(id)
  CROSS JOIN LATERAL (SELECT * FROM claims WHERE claim_id = i.id OFFSET 0) AS c
UNION ALL SELECT 5, {_CLAIM} FROM (
    SELECT * FROM unnest($6::text[], $7::text[], $8::text[])
    UNION SELECT own.subject_id, own.metric, own.source_id FROM unnest($5::text[]) AS i(id)
      CROSS JOIN LATERAL (SELECT * FROM claims WHERE claim_id = i.id AND metric IS NOT NULL OFFSET 0) AS own
  ) AS k(s, m, src)
  CROSS JOIN LATERAL (
    SELECT * FROM estimates WHERE subject_id = k.s AND metric = k.m AND source_id = k.src OFFSET 0
  ) AS e
  CROSS JOIN LATERAL (
    SELECT * FROM claims WHERE claim_id IN (e.asserted_claim_id, e.projected_claim_id) OFFSET 0
  ) AS c
ORDER BY 1, 4, 5""",
    "sqlite": f"""
SELECT 0, e.position, e.event_id, e.stream_id, e.stream_version, e.type, e.schema_version, e.data,
  e.metadata, e.valid_from, e.recorded_at, e.prev_hash, e.hash
FROM json_each(?1) AS w JOIN events e ON e.stream_id = w.value
  LEFT JOIN stream_records r ON r.stream_id = w.value AND r.format = ?4
WHERE e.stream_version > coalesce(r.version, 0)
UNION ALL SELECT 1, {EVENT_COLUMNS} FROM events
  WHERE stream_id IN (SELECT value FROM json_each(?2)) AND stream_version = 1
UNION ALL SELECT * FROM (SELECT 2, {EVENT_COLUMNS} FROM events WHERE ?3 ORDER BY position DESC LIMIT 1)
UNION ALL SELECT 3, {_RECORD} FROM stream_records r
  WHERE r.stream_id IN (SELECT value FROM json_each(?1)) AND r.format = ?4
UNION ALL SELECT 4, {_CLAIM} FROM claims c WHERE c.claim_id IN (SELECT value FROM json_each(?5))
UNION ALL SELECT 5, {_CLAIM} FROM (
    SELECT json_extract(value, '$[0]') AS s, json_extract(value, '$[1]') AS m,
      json_extract(value, '$[2]') AS src FROM json_each(?6)
    UNION SELECT subject_id, metric, source_id FROM claims
      WHERE claim_id IN (SELECT value FROM json_each(?5)) AND metric IS NOT NULL
  ) AS k
  JOIN estimates e ON e.subject_id = k.s AND e.metric = k.m AND e.source_id = k.src
  JOIN claims c ON c.claim_id IN (e.asserted_claim_id, e.projected_claim_id)
ORDER BY 1, 4, 5""",
}
# The parts of READ_FOR_WRITE's rows: the streams' events (0), the probed streams' first events (1), the head
# (2), the records (3), the claims (4, 5), the views' checkpoint version (6).
EVENTS_PART, PROBE_PART, HEAD_PART, RECORD_PART = 0, 1, 2, 3
CLAIM_PARTS = (4, 5)

READ_AFTER = {
    "postgresql": f"SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2",
    "sqlite": f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?",
}

# What a writer that finds the log moved on since its process last wrote needs to go on sealing it
# (``store.seal``): the stored tree's frontier nodes for the size rounded down to a stored level (part 0), the
# chain hashes of the events after them (1) and the latest checkpoint (2). One statement, where reading them
# through the tree's queries (``tree.grow``, ``tree.latest_checkpoint``) took four or five.
SEAL_STATE = {
    "postgresql": """
SELECT 0, n.level, n.idx, n.hash, NULL FROM unnest($1::smallint[], $2::bigint[]) AS w(level, idx)
  CROSS JOIN LATERAL (SELECT * FROM tree_nodes WHERE level = w.level AND idx = w.idx OFFSET 0) AS n
UNION ALL SELECT 1, NULL, position, NULL, hash FROM events WHERE position > $3 AND position <= $4
UNION ALL (SELECT 2, NULL, size, NULL, note FROM log_checkpoints ORDER BY size DESC LIMIT 1)""",
    "sqlite": """
SELECT 0, n.level, n.idx, n.hash, NULL FROM json_each(?1) AS w
  JOIN tree_nodes n ON n.level = json_extract(w.value, '$[0]') AND n.idx = json_extract(w.value, '$[1]')
UNION ALL SELECT 1, NULL, position, NULL, hash FROM events WHERE position > ?2 AND position <= ?3
UNION ALL SELECT * FROM (SELECT 2, NULL, size, NULL, note FROM log_checkpoints ORDER BY size DESC LIMIT 1)""",
}

# The idempotency keys a batch of writes asks about and the answers it keeps (``store.idempotency.Pending``),
# on the driver: through SQLAlchemy (an IN list of (principal, key) pairs, a statement for each batch size)
# they were 4.1% of a keyed write server's samples (bench/results-2026-12-05-ninth-workers.txt).
KEYS_ASKED = {
    "postgresql": """
SELECT i.principal, i.key, i.request_hash, i.status_code, i.response
FROM unnest($1::text[], $2::text[]) AS k(p, key)
  CROSS JOIN LATERAL (SELECT * FROM idempotency_keys WHERE principal = k.p AND key = k.key OFFSET 0) AS i""",
    "sqlite": """
SELECT i.principal, i.key, i.request_hash, i.status_code, i.response FROM json_each(?1) AS k
  JOIN idempotency_keys i
    ON i.principal = json_extract(k.value, '$[0]') AND i.key = json_extract(k.value, '$[1]')""",
}
KEYS_ANSWERED = {
    "postgresql": """
INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response, created_at)
SELECT k.*, $6::timestamptz FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[]) AS k""",
    "sqlite": """
INSERT INTO idempotency_keys (principal, key, request_hash, status_code, response, created_at)
VALUES (?, ?, ?, ?, ?, ?)""",
}

# The claim rows a batch of events needs: by id (part 0), every claim under some estimate keys (1), and the
# claims chosen under others (2: the asserted figure and the projection).
CLAIMS_FOR = {
    "postgresql": """
SELECT 0, c.claim_id, c.state FROM unnest($1::text[]) AS i(id)
  CROSS JOIN LATERAL (SELECT * FROM claims WHERE claim_id = i.id OFFSET 0) AS c
UNION ALL SELECT 1, c.claim_id, c.state FROM unnest($2::text[], $3::text[], $4::text[]) AS k(s, m, src)
  CROSS JOIN LATERAL (
    SELECT * FROM claims WHERE subject_id = k.s AND metric = k.m AND source_id = k.src OFFSET 0
  ) AS c
UNION ALL SELECT 2, c.claim_id, c.state FROM unnest($5::text[], $6::text[], $7::text[]) AS k(s, m, src)
  CROSS JOIN LATERAL (
    SELECT * FROM estimates WHERE subject_id = k.s AND metric = k.m AND source_id = k.src OFFSET 0
  ) AS e
  CROSS JOIN LATERAL (
    SELECT * FROM claims WHERE claim_id IN (e.asserted_claim_id, e.projected_claim_id) OFFSET 0
  ) AS c""",
    "sqlite": """
SELECT 0, claim_id, state FROM claims WHERE claim_id IN (SELECT value FROM json_each(?1))
UNION ALL SELECT 1, c.claim_id, c.state FROM json_each(?2) AS k
  JOIN claims c ON c.subject_id = json_extract(k.value, '$[0]') AND c.metric = json_extract(k.value, '$[1]')
    AND c.source_id = json_extract(k.value, '$[2]')
UNION ALL SELECT 2, c.claim_id, c.state FROM json_each(?3) AS k
  JOIN estimates e ON e.subject_id = json_extract(k.value, '$[0]')
    AND e.metric = json_extract(k.value, '$[1]') AND e.source_id = json_extract(k.value, '$[2]')
  JOIN claims c ON c.claim_id IN (e.asserted_claim_id, e.projected_claim_id)""",
}

_CLAIM_COLUMNS = (
    "claim_id, subject_id, source_id, metric, status, version, made_position, updated_position, state"
)
_TIMELINE_COLUMNS = "position, subject_id, occurred_on, source_id, kind, entry"
_REGISTRATION_COLUMNS = "stream_id, kind, position, definition"

# Everything a write or a fold changes, in one statement (the events' part only when there are events). The
# parts touch disjoint rows (a key is either deleted or upserted), as the CTEs of one statement must. With
# the events go the answers to the batch's idempotency keys (``answered``), so that a keyed write without a
# transaction of its own stores them in its one call: a key answered meanwhile by another process fails the
# call on the keys' primary key, and nothing is written.
_APPEND_CTE = f"""appended AS (
  INSERT INTO events ({EVENT_COLUMNS})
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
), """
_SAVE_POSTGRES = f"""
WITH {{appending}}claimed AS (
  INSERT INTO claims ({_CLAIM_COLUMNS})
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
  INSERT INTO registrations ({_REGISTRATION_COLUMNS})
  SELECT * FROM unnest($18::text[], $19::text[], $20::bigint[], $21::text[])
  ON CONFLICT (stream_id) DO UPDATE SET kind = excluded.kind, position = excluded.position,
    definition = excluded.definition
), unlisted AS (
  DELETE FROM timeline t USING unnest($22::bigint[]) AS u(p) WHERE t.position = u.p
), listed AS (
  INSERT INTO timeline ({_TIMELINE_COLUMNS})
  SELECT * FROM unnest($23::bigint[], $24::text[], $25::date[], $26::text[], $27::text[], $28::text[])
  ON CONFLICT (position) DO UPDATE SET subject_id = excluded.subject_id, occurred_on = excluded.occurred_on,
    source_id = excluded.source_id, kind = excluded.kind, entry = excluded.entry
), checked AS (
  INSERT INTO projection_checkpoints (name, position, updated_at)
  SELECT $29::text, $30::bigint, $31::timestamptz WHERE $29::text IS NOT NULL
  ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at
)
SELECT count(*) FROM (SELECT pg_notify('{CHANNEL}', '') WHERE $32::boolean) AS notified"""

SAVE_APPENDING = _SAVE_POSTGRES.replace("{appending}", _APPEND_CTE)
_CAST = re.compile(r"\$(\d+)::(\w+(?:\[\])?)")
SAVE_FOLDING = _SAVE_POSTGRES.replace("{appending}", "")

# The appending statement as a function that takes the log's write lock itself, so that a write needs no
# transaction of its own: its reads go first, each a statement on its own, and this one call locks, checks
# that the log still ends where those reads saw it end (the head its first event continues from) and that
# the views were not rewritten since (their checkpoint's row version, $62: a rebuild swaps new rows in under
# the lock without appending), writes and, called outside a transaction, commits; two round trips where
# BEGIN and the lock, the read, the write and COMMIT took four. The function is schema (migration 0016
# created it, 0020 replaced it to store idempotency keys' answers too, as this text gives it); a test fails
# when the two differ, since a change here then needs a migration.
APPEND_FUNCTION = "timeline_append"
# SQLSTATE raised when the log or the views moved on since the reads: nothing was written; read again
# under the lock.
MOVED_ON = "TL409"
# The function's parameters: the appending statement's, typed as its casts type them ($1-$61), then the row
# version of the views' checkpoint the reads saw ($62).
_APPEND_TYPES = (
    *(kind for _, kind in sorted({int(n): kind for n, kind in _CAST.findall(SAVE_APPENDING)}.items())),
    "bigint",
)
_VIEWS_SEEN = f"${len(_APPEND_TYPES)}"
APPEND_BODY = f"""
DECLARE
  _head bigint;
  _hash text;
  _sent bigint;
BEGIN
  LOCK TABLE events IN EXCLUSIVE MODE;
  SELECT position, hash INTO _head, _hash FROM events ORDER BY position DESC LIMIT 1;
  IF coalesce(_head, 0) <> $33[1] - 1 OR _hash <> $43[1] THEN
    RAISE EXCEPTION 'the log moved on: it ends at position %, not %', coalesce(_head, 0), $33[1] - 1
      USING ERRCODE = '{MOVED_ON}';
  END IF;
  IF (SELECT xmin::text::bigint FROM projection_checkpoints WHERE name = $29)
      IS DISTINCT FROM {_VIEWS_SEEN} THEN
    RAISE EXCEPTION 'the views were rewritten since this write read them' USING ERRCODE = '{MOVED_ON}';
  END IF;
{SAVE_APPENDING.strip().replace("SELECT count(*) FROM", "SELECT count(*) INTO _sent FROM")};
  RETURN _sent;
END
"""
CREATE_APPEND_FUNCTION = (
    f"CREATE OR REPLACE FUNCTION {APPEND_FUNCTION}({', '.join(_APPEND_TYPES)}) RETURNS bigint\n"
    # Generic plans, as the write transaction's statements run (store.database).
    "LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $append$"
    f"{APPEND_BODY}$append$"
)
APPEND = f"SELECT {APPEND_FUNCTION}({', '.join(f'${i}' for i in range(1, len(_APPEND_TYPES) + 1))})"

SQLITE = {
    "events": f"INSERT INTO events ({EVENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "claims": f"""INSERT INTO claims ({_CLAIM_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (claim_id) DO UPDATE SET subject_id = excluded.subject_id, source_id = excluded.source_id,
  metric = excluded.metric, status = excluded.status, version = excluded.version,
  made_position = excluded.made_position, updated_position = excluded.updated_position,
  state = excluded.state""",
    "unchosen": "DELETE FROM estimates WHERE subject_id = ? AND metric = ? AND source_id = ?",
    "chosen": """INSERT INTO estimates (subject_id, metric, source_id, asserted_claim_id, projected_claim_id)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (subject_id, metric, source_id) DO UPDATE SET asserted_claim_id = excluded.asserted_claim_id,
  projected_claim_id = excluded.projected_claim_id""",
    "defined": f"""INSERT INTO registrations ({_REGISTRATION_COLUMNS}) VALUES (?, ?, ?, ?)
ON CONFLICT (stream_id) DO UPDATE SET kind = excluded.kind, position = excluded.position,
  definition = excluded.definition""",
    "unlisted": "DELETE FROM timeline WHERE position = ?",
    "listed": f"""INSERT INTO timeline ({_TIMELINE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (position) DO UPDATE SET subject_id = excluded.subject_id, occurred_on = excluded.occurred_on,
  source_id = excluded.source_id, kind = excluded.kind, entry = excluded.entry""",
    "kept": """INSERT INTO stream_records (stream_id, version, format, state) VALUES (?, ?, ?, ?)
ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, format = excluded.format,
  state = excluded.state""",
    "grown": "INSERT INTO tree_nodes (level, idx, hash) VALUES (?, ?, ?)",
    "resigned": "DELETE FROM log_checkpoints WHERE size = ?",
    "signed": """INSERT INTO log_checkpoints (size, root_hash, recorded_at, note) VALUES (?, ?, ?, ?)
ON CONFLICT (size) DO NOTHING""",
    "checked": """INSERT INTO projection_checkpoints (name, position, updated_at) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at""",
    "answered": KEYS_ANSWERED["sqlite"],
}
