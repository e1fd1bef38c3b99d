"""The temporary copies of the view tables a rebuild folds into while the views keep serving, and their swap
into place.

A temporary table is private to its connection and, on both databases, found before a shared table of the
same name; so on the rebuild's connection the same queries that maintain the views fill the shadows.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.store.schema import checkpoints, claims, estimates, registrations, timeline

TABLES = (claims, estimates, registrations, timeline)
SHADOWED = (*TABLES, checkpoints)
# A rebuild's temporary tables grow to the size of the views; PostgreSQL keeps them in the session's own
# buffers (8 MB by default), spilling to files beyond; these are taken only as the tables grow.
_PG_TEMP_BUFFERS = "256MB"
# SQLite's page cache for them (KiB), 2 MB by default: the fold reads and rewrites claim rows all over a
# table of hundreds of MB, and each page missed is a read from the temporary file.
_SQLITE_TEMP_CACHE_KIB = 65536
# The only index beyond the primary keys that the fold looks rows up by (every claim under an estimate key);
# the views' other indexes serve reads, which never reach the shadows, so they are not kept up while folding.
_FOLD_LOOKS_UP = ("subject_id", "metric", "source_id")
# The statistics target the swap analyzes the shadows with (PostgreSQL's default is 100).
_SHADOW_STATISTICS = 10


async def create(conn: AsyncConnection, *, on_disk: bool) -> None:
    """Create the empty shadows (with the views' indexes) on this connection."""
    # Only on a connection of its own, which dies after (not on a caller's: SQLite refuses the change in a
    # transaction once it has used a temporary table, PostgreSQL once the session has).
    if on_disk and conn.dialect.name == "sqlite":
        # On disk, not in memory: the shadows grow to the size of the views (SQLite's default anyway).
        await conn.execute(sa.text("PRAGMA temp_store = FILE"))
        await conn.execute(sa.text(f"PRAGMA temp.cache_size = -{_SQLITE_TEMP_CACHE_KIB}"))
    if on_disk and conn.dialect.name == "postgresql":
        await conn.execute(sa.text(f"SET temp_buffers = '{_PG_TEMP_BUFFERS}'"))
    for table in SHADOWED:
        create = str(sa.schema.CreateTable(table).compile(dialect=conn.dialect))
        await conn.execute(sa.text(create.replace("CREATE TABLE", "CREATE TEMPORARY TABLE", 1)))
        for index in table.indexes:
            if tuple(c.name for c in index.columns) != _FOLD_LOOKS_UP:
                continue
            columns = ", ".join(c.name for c in index.columns)
            await conn.execute(sa.text(f"CREATE INDEX shadow_{index.name} ON {table.name} ({columns})"))


async def swap_in(conn: AsyncConnection) -> None:
    """Make the views' rows those of the shadows, then drop the shadows (not the checkpoint: the caller
    moves it). Only rows that differ are written: a rebuild that finds the views right rewrites nothing,
    and the write lock it is called under is held for a read of both rather than a rewrite of the views."""
    sqlite = conn.dialect.name == "sqlite"
    live = "main" if sqlite else str((await conn.execute(sa.text("SELECT current_schema()"))).scalar_one())
    shadow = "temp" if sqlite else "pg_temp"
    if not sqlite:
        # These compare and copy whole tables, under the log's write lock: the write transaction rules
        # sequential scans out for its key lookups (``connections.WRITE_PLANS``), not for these.
        await conn.execute(sa.text("SET LOCAL enable_seqscan = on"))
        # Temporary tables are never analyzed by autovacuum: the DELETE's anti-join below is planned with
        # the shadows' real sizes rather than without statistics (the cause of the INSERT's trouble below).
        # With a tenth of the default sample: the plans need the sizes and keys (the same hash anti-joins at
        # 20,000 events), and the full sample's statistics of the long JSON columns took 94 of the swap's
        # 220 ms (bench/results-2026-12-05-fourteenth-fold.txt).
        await conn.execute(sa.text(f"SET LOCAL default_statistics_target = {_SHADOW_STATISTICS}"))
        for table in TABLES:
            await conn.execute(sa.text(f"ANALYZE {shadow}.{table.name}"))
    same = "IS" if sqlite else "IS NOT DISTINCT FROM"
    for table in TABLES:
        names = [c.name for c in table.columns]
        keys = [c.name for c in table.primary_key.columns]
        columns = ", ".join(names)
        keyed = " AND ".join(f"s.{k} = {live}.{table.name}.{k}" for k in keys)
        equal = " AND ".join(f"s.{n} {same} {live}.{table.name}.{n}" for n in names if n not in keys)
        await conn.execute(
            sa.text(
                f"DELETE FROM {live}.{table.name} WHERE NOT EXISTS "
                f"(SELECT 1 FROM {shadow}.{table.name} AS s WHERE {keyed} AND {equal})"
            )
        )
        # What is left of the live rows equals the shadows': the rest go in, their key the only check. An
        # anti-join here (INSERT ... WHERE NOT EXISTS) was planned on PostgreSQL against the live table's
        # statistics, which say nothing of an empty or never-analyzed table: a nested loop that scanned the
        # table it was filling, for every row (1,000,000 events: 59 MB of claims in 5 minutes).
        await conn.execute(
            sa.text(
                f"INSERT INTO {live}.{table.name} ({columns}) SELECT {columns} "
                f"FROM {shadow}.{table.name} AS s WHERE true "
                f"ON CONFLICT ({', '.join(keys)}) DO NOTHING"
            )
        )
    for table in SHADOWED:
        await conn.execute(sa.text(f"DROP TABLE {shadow}.{table.name}"))
