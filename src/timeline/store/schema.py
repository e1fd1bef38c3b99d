"""Table definitions. The database gets them only through Alembic migrations; this module is what the
migrations are checked against for drift."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# A position (or a log size) as a key: on SQLite an INTEGER primary key, which is the rowid itself (one b-tree
# rather than a table and an index beside it); on PostgreSQL a BIGINT. Without AUTOINCREMENT, whose
# sqlite_sequence row cost a page a commit: writers always give the position (the head plus one, under the
# write lock) and events are never deleted, so SQLite never chooses one (migration 0012).
_Position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

events = sa.Table(
    "events",
    metadata,
    sa.Column("position", _Position, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Uuid(), nullable=False, unique=True),
    sa.Column("stream_id", sa.String(200), nullable=False),
    sa.Column("stream_version", sa.Integer(), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("schema_version", sa.Integer(), nullable=False),
    # JSON text exactly as encoded: the bytes an auditor reads (and, later, hashes) are the bytes stored.
    sa.Column("data", sa.Text(), nullable=False),
    sa.Column("metadata", sa.Text(), nullable=False),
    sa.Column("valid_from", sa.Date(), nullable=True),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    # The hash chain (timeline.store.chain): tamper evidence over the whole log, in position order.
    sa.Column("prev_hash", sa.String(64), nullable=False),
    # Not unique by a constraint: the hash covers the position, so only a SHA-256 collision repeats one, and
    # `verify` checks them all; no query reads by hash (an index cost a page per commit, migration 0012).
    sa.Column("hash", sa.String(64), nullable=False),
    sa.UniqueConstraint("stream_id", "stream_version"),
)

# The corrections that may move a claim to another subject (a superset: "_" matches any character, and
# SQLite's LIKE ignores case). Time travel on a subject reads them through this partial index instead of
# scanning the log; the predicate is spelled out literally so both planners can match a query to it.
MOVES_SUBJECT = sa.text("type = 'RecordCorrected' AND data LIKE '%\"subject_id\"%'")
sa.Index(
    "ix_events_moves_subject", events.c.stream_id, sqlite_where=MOVES_SUBJECT, postgresql_where=MOVES_SUBJECT
)

# The subject each ClaimMade names, as each database's SQL spells it: time travel finds a subject's claims
# through an expression index on it and the position (migrations 0006, 0014), in the log itself rather than
# in the claims view.
# Alembic cannot reflect expression indexes on SQLite, so this one is declared by its migration alone
# (tests/test_migrations.py checks it exists and that the query below uses it on both databases).
CLAIM_SUBJECT_INDEX = "ix_events_claim_subject_at"  # (subject, position) since migration 0014
SUBJECT_NAMED = {
    "sqlite": "json_extract(data, '$.subject_id')",
    "postgresql": "(data::jsonb ->> 'subject_id')",
}

# The write path's record of each stream (timeline.store.streams): its version and the state the rules read,
# a snapshot the writer checks against the log (events after ``version`` are folded on top).
stream_records = sa.Table(
    "stream_records",
    metadata,
    sa.Column("stream_id", sa.String(200), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    # The fold's format: a record of another format is ignored and the stream refolded from the log.
    sa.Column("format", sa.Integer(), nullable=False),
    sa.Column("state", sa.Text(), nullable=False),
)

# Time travel's snapshots (timeline.store.snapshots): a subject's claims folded from the log up to a
# position, kept by the asynchronous projector. A derived cache: each carries the chain hash at its position
# and a digest of what it holds, and a reader that finds either wrong folds from the log instead.
time_travel_snapshots = sa.Table(
    "time_travel_snapshots",
    metadata,
    sa.Column("subject_id", sa.String(200), primary_key=True),
    sa.Column("position", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("format", sa.Integer(), nullable=False),
    sa.Column("chain_hash", sa.String(64), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False),
    # The SHA-256 of each part below, which the digest is over: each part is read and checked alone.
    sa.Column("parts", sa.String(200), nullable=False),
    sa.Column("state", sa.LargeBinary(), nullable=False),  # the claims every cut reads
    sa.Column("earlier", sa.LargeBinary(), nullable=False),  # what only an ``as_of`` cut reads
    sa.Column("versions", sa.LargeBinary(), nullable=False),  # each claim's stream version
)

# What time travel's snapshot taker has counted of each subject's events since its latest snapshot came due
# (timeline.store.snapshots.Taker), written with its batch: a restarted taker reads it back rather than
# counting the log again (migration 0018).
time_travel_counts = sa.Table(
    "time_travel_counts",
    metadata,
    sa.Column("subject_id", sa.String(200), primary_key=True),
    sa.Column("events", sa.Integer(), nullable=False),
    # The position of a snapshot that came due and is not stored yet (it is taken after its batch commits).
    sa.Column("due_at", sa.BigInteger(), nullable=True),
)

claims = sa.Table(
    "claims",
    metadata,
    sa.Column("claim_id", sa.String(200), primary_key=True),
    sa.Column("subject_id", sa.String(200), nullable=False),
    sa.Column("source_id", sa.String(200), nullable=False),
    sa.Column("metric", sa.String(200), nullable=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("made_position", sa.BigInteger(), nullable=False),
    sa.Column("updated_position", sa.BigInteger(), nullable=False),
    # The whole folded claim state, so a rebuild and an incremental update can be compared exactly.
    sa.Column("state", sa.Text(), nullable=False),
    sa.Index(None, "subject_id", "metric", "source_id"),
    # A source's claims, a page at a time in the order they were made (migration 0013).
    sa.Index(None, "source_id", "made_position"),
)

estimates = sa.Table(
    "estimates",
    metadata,
    sa.Column("subject_id", sa.String(200), primary_key=True),
    sa.Column("metric", sa.String(200), primary_key=True),
    sa.Column("source_id", sa.String(200), primary_key=True),
    # The source's latest asserted figure and its latest projection; a row has at least one.
    sa.Column("asserted_claim_id", sa.String(200), nullable=True),
    sa.Column("projected_claim_id", sa.String(200), nullable=True),
    # Small rows under a key of three columns: on SQLite one b-tree, not a table and its key's index.
    sqlite_with_rowid=False,
)

timeline = sa.Table(
    "timeline",
    metadata,
    sa.Column("position", _Position, primary_key=True, autoincrement=False),
    sa.Column("subject_id", sa.String(200), nullable=False),
    sa.Column("occurred_on", sa.Date(), nullable=False),
    sa.Column("source_id", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("entry", sa.Text(), nullable=False),
    sa.Index(None, "subject_id", "occurred_on", "position"),
)

registrations = sa.Table(
    "registrations",
    metadata,
    sa.Column("stream_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("definition", sa.Text(), nullable=False),
)

checkpoints = sa.Table(
    "projection_checkpoints",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger(), nullable=False),
    # When the projection last changed: the Last-Modified of what it serves.
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    # The failure its leader met (not the database's passing fault), until a batch commits again: what
    # every process's /health names, whichever process leads.
    sa.Column("failure", sa.Text(), nullable=True),
)

# An asynchronous projection (timeline.activity): what each source has recorded against its name.
source_activity = sa.Table(
    "source_activity",
    metadata,
    sa.Column("source_id", sa.String(200), primary_key=True),
    sa.Column("claims_made", sa.Integer(), nullable=False),
    sa.Column("denials", sa.Integer(), nullable=False),
    sa.Column("confirmations", sa.Integer(), nullable=False),
    sa.Column("evidence", sa.Integer(), nullable=False),
    sa.Column("statements", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("denials_withdrawn", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("last_position", sa.BigInteger(), nullable=False),
)

# Bearer tokens: only a hash is stored; the name is what events record as who wrote them.
tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("scopes", sa.String(100), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
)

# The first response to each (token, Idempotency-Key), replayed for retries of the same request.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("principal", sa.String(100), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("response", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# The Merkle tree over the log (timeline.merkle): the complete nodes of level 4 and above (16 leaves and
# more), kept in the transaction that appends; lower nodes are hashed from the events' own hashes on demand.
tree_nodes = sa.Table(
    "tree_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger(), primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

# One signed checkpoint (a C2SP signed note) per transaction that appended, while a key is configured.
log_checkpoints = sa.Table(
    "log_checkpoints",
    metadata,
    sa.Column("size", _Position, primary_key=True, autoincrement=False),
    sa.Column("root_hash", sa.String(64), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("note", sa.Text(), nullable=False),
)

# Witnesses' cosignatures of checkpoints, each checked against the witness key that came with it.
cosignatures = sa.Table(
    "cosignatures",
    metadata,
    sa.Column("size", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("witness", sa.String(200), primary_key=True),
    sa.Column("verifier_key", sa.Text(), nullable=False),
    sa.Column("signature", sa.Text(), nullable=False),
    sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
)
