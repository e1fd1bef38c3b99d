"""fewer b-tree pages written per commit: no AUTOINCREMENT, rowid keys, two indexes no query needs

Revision ID: 0012_fewer_pages_per_write
Revises: 0011_activity_counts_statements
Create Date: 2026-12-03 13:45:00

A one-event write on SQLite wrote ~17 pages at its commit, one or more per b-tree it touched. Cut here:

- ``sqlite_sequence`` (AUTOINCREMENT on ``events``), one page a commit. Positions are always given by the
  writer (the head plus one, under the write lock), never drawn by SQLite, and events cannot be deleted
  (triggers), so AUTOINCREMENT guarded nothing; a rolled-back write's positions were never visible.
- The unique index on ``events.hash``: no query reads by hash, and the hash covers the position (the chain
  recipe), so two events share one only through a SHA-256 collision; ``timeline verify`` checks every hash.
- ``ix_claims_subject_id_claim_id``: made for time travel, which since 0006 finds a subject's claims in the
  log; no query uses it (``(subject_id, metric, source_id)`` serves the group by subject).
- SQLite only, tables rebuilt: ``timeline.position`` and ``log_checkpoints.size`` become INTEGER keys, the
  rowid itself, instead of a table plus a unique index; ``estimates`` and ``tree_nodes`` (small rows keyed
  by several columns) become WITHOUT ROWID tables, one b-tree instead of two.

PostgreSQL loses the two indexes only; its tables are unchanged.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_fewer_pages_per_write"
down_revision: str | None = "0011_activity_counts_statements"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The SQLite tables' definitions after (NEW) and before (OLD) this revision; their indexes and triggers are
# carried over from the table being replaced.
NEW = {
    "events": """CREATE TABLE events (
	position INTEGER NOT NULL,
	event_id CHAR(32) NOT NULL,
	stream_id VARCHAR(200) NOT NULL,
	stream_version INTEGER NOT NULL,
	type VARCHAR(100) NOT NULL,
	schema_version INTEGER NOT NULL,
	data TEXT NOT NULL,
	metadata TEXT NOT NULL,
	valid_from DATE,
	recorded_at DATETIME NOT NULL,
	prev_hash VARCHAR(64) NOT NULL,
	hash VARCHAR(64) NOT NULL,
	CONSTRAINT pk_events PRIMARY KEY (position),
	CONSTRAINT uq_events_stream_id_stream_version UNIQUE (stream_id, stream_version),
	CONSTRAINT uq_events_event_id UNIQUE (event_id)
)""",
    "timeline": """CREATE TABLE timeline (
	position INTEGER NOT NULL,
	subject_id VARCHAR(200) NOT NULL,
	occurred_on DATE NOT NULL,
	source_id VARCHAR(200) NOT NULL,
	kind VARCHAR(20) NOT NULL,
	entry TEXT NOT NULL,
	CONSTRAINT pk_timeline PRIMARY KEY (position)
)""",
    "log_checkpoints": """CREATE TABLE log_checkpoints (
	size INTEGER NOT NULL,
	root_hash VARCHAR(64) NOT NULL,
	recorded_at DATETIME NOT NULL,
	note TEXT NOT NULL,
	CONSTRAINT pk_log_checkpoints PRIMARY KEY (size)
)""",
    "estimates": """CREATE TABLE estimates (
	subject_id VARCHAR(200) NOT NULL,
	metric VARCHAR(200) NOT NULL,
	source_id VARCHAR(200) NOT NULL,
	asserted_claim_id VARCHAR(200),
	projected_claim_id VARCHAR(200),
	CONSTRAINT pk_estimates PRIMARY KEY (subject_id, metric, source_id)
) WITHOUT ROWID""",
    "tree_nodes": """CREATE TABLE tree_nodes (
	level SMALLINT NOT NULL,
	idx BIGINT NOT NULL,
	hash BLOB NOT NULL,
	CONSTRAINT pk_tree_nodes PRIMARY KEY (level, idx)
) WITHOUT ROWID""",
}
OLD = {
    "events": """CREATE TABLE events (
	position INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	event_id CHAR(32) NOT NULL,
	stream_id VARCHAR(200) NOT NULL,
	stream_version INTEGER NOT NULL,
	type VARCHAR(100) NOT NULL,
	schema_version INTEGER NOT NULL,
	data TEXT NOT NULL,
	metadata TEXT NOT NULL,
	valid_from DATE,
	recorded_at DATETIME NOT NULL,
	prev_hash VARCHAR(64) NOT NULL,
	hash VARCHAR(64) NOT NULL,
	CONSTRAINT uq_events_stream_id_stream_version UNIQUE (stream_id, stream_version),
	CONSTRAINT uq_events_event_id UNIQUE (event_id),
	CONSTRAINT uq_events_hash UNIQUE (hash)
)""",
    "timeline": """CREATE TABLE timeline (
	position BIGINT NOT NULL,
	subject_id VARCHAR(200) NOT NULL,
	occurred_on DATE NOT NULL,
	source_id VARCHAR(200) NOT NULL,
	kind VARCHAR(20) NOT NULL,
	entry TEXT NOT NULL,
	CONSTRAINT pk_timeline PRIMARY KEY (position)
)""",
    "log_checkpoints": """CREATE TABLE log_checkpoints (
	size BIGINT NOT NULL,
	root_hash VARCHAR(64) NOT NULL,
	recorded_at DATETIME NOT NULL,
	note TEXT NOT NULL,
	CONSTRAINT pk_log_checkpoints PRIMARY KEY (size)
)""",
    "estimates": """CREATE TABLE estimates (
	subject_id VARCHAR(200) NOT NULL,
	metric VARCHAR(200) NOT NULL,
	source_id VARCHAR(200) NOT NULL,
	asserted_claim_id VARCHAR(200),
	projected_claim_id VARCHAR(200),
	CONSTRAINT pk_estimates PRIMARY KEY (subject_id, metric, source_id)
)""",
    "tree_nodes": """CREATE TABLE tree_nodes (
	level SMALLINT NOT NULL,
	idx BIGINT NOT NULL,
	hash BLOB NOT NULL,
	CONSTRAINT pk_tree_nodes PRIMARY KEY (level, idx)
)""",
}
CLAIMS_BY_SUBJECT = "ix_claims_subject_id_claim_id"


def upgrade() -> None:
    op.drop_index(CLAIMS_BY_SUBJECT, table_name="claims")
    if op.get_context().dialect.name == "sqlite":
        for name, create in NEW.items():
            _rebuild(name, create)
        op.execute(sa.text("DELETE FROM sqlite_sequence WHERE name = 'events'"))
    else:
        op.drop_constraint("uq_events_hash", "events", type_="unique")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for name, create in OLD.items():
            _rebuild(name, create)
        # What AUTOINCREMENT would have recorded: the highest position.
        op.execute(
            sa.text(
                "INSERT INTO sqlite_sequence (name, seq) SELECT 'events', max(position) FROM events "
                "WHERE EXISTS (SELECT 1 FROM events)"
            )
        )
    else:
        op.create_unique_constraint("uq_events_hash", "events", ["hash"])
    op.create_index(CLAIMS_BY_SUBJECT, "claims", ["subject_id", "claim_id"], unique=False)


def _rebuild(name: str, create: str) -> None:
    """Replace SQLite table ``name`` by one made with ``create``, keeping its rows, its indexes (those
    named: a constraint's own index comes with the table) and its triggers."""
    bind = op.get_bind()
    kept = [
        str(sql)
        for (sql,) in bind.execute(
            sa.text(
                "SELECT sql FROM sqlite_master WHERE tbl_name = :name AND type IN ('index', 'trigger') "
                "AND sql IS NOT NULL ORDER BY type, name"
            ),
            {"name": name},
        )
    ]
    columns = ", ".join(str(row[1]) for row in bind.execute(sa.text(f"PRAGMA table_info({name})")))
    op.execute(sa.text(create.replace(f"CREATE TABLE {name} ", f"CREATE TABLE _new_{name} ", 1)))
    op.execute(sa.text(f"INSERT INTO _new_{name} ({columns}) SELECT {columns} FROM {name}"))
    # Dropping a table drops its indexes and triggers, and fires no trigger (the log's refuse deletes).
    op.execute(sa.text(f"DROP TABLE {name}"))
    op.execute(sa.text(f"ALTER TABLE _new_{name} RENAME TO {name}"))
    for sql in kept:
        op.execute(sa.text(sql))
