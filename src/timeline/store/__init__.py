"""Storage: the append-only event log and the projection tables, on SQLite or PostgreSQL.

The package itself holds only what the command line shows before it opens a database (its default URL, the
token scopes), so that ``timeline --help`` need not load SQLAlchemy.
"""

from typing import Literal

DEFAULT_URL = "sqlite+aiosqlite:///var/timeline.db"

Scope = Literal["read", "write", "admin"]
SCOPES: tuple[Scope, ...] = ("read", "write", "admin")
