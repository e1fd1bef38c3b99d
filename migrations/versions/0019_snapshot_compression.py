"""time travel's snapshots: stored with lz4 compression on PostgreSQL where the server has it

Revision ID: 0019_snapshot_compression
Revises: 0018_snapshot_counts
Create Date: 2026-12-05 00:00:00

A snapshot of a subject of about 2,200 claims is some 5.9 MB of JSON (its claims and what they showed at
earlier valid times), and PostgreSQL compresses what it stores out of line. With the default method, pglz,
storing one took 76 ms of the server's time; with lz4, 24 ms, for 0.71 MB stored against 0.56 and the same
time to read back (bench/results-2026-12-05-snapshot-takes.txt). Rows stored before keep their method until
they are rewritten (snapshots are replaced as the projector takes new ones). A server built without lz4
keeps its default; SQLite stores the parts as they are. pg_dump records the method: restoring such a dump
onto a server without lz4 needs its --no-toast-compression. Downgrading gives the columns back the server's
default.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019_snapshot_compression"
down_revision: str | None = "0018_snapshot_counts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARTS = ("state", "earlier", "versions")


def _lz4_available() -> bool:
    # The methods a server can use are the values its setting accepts (lz4 only if built with it; the
    # setting exists from PostgreSQL 14, which is when per-column compression came).
    found = op.get_bind().execute(
        sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
    )
    methods = found.scalar_one_or_none()
    return methods is not None and "lz4" in methods


def _set(method: str) -> None:
    # ``method`` is lz4 or DEFAULT (the server's default_toast_compression, as before 0019).
    if op.get_bind().dialect.name != "postgresql" or not _lz4_available():
        return
    for part in _PARTS:
        op.execute(f"ALTER TABLE time_travel_snapshots ALTER COLUMN {part} SET COMPRESSION {method}")


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("DEFAULT")
