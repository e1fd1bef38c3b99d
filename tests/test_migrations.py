"""Migrations: empty to head (and back) on both databases, and no drift from the table definitions."""

from __future__ import annotations

import warnings

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store import eventlog, migrate, snapshots, travel
from timeline.store.database import Database
from timeline.store.queries import claims_made_on, source_claims
from timeline.store.schema import CLAIM_SUBJECT_INDEX, metadata

from .conftest import SEED

SEED_SUBJECT = "dprk-troops-to-russia"
TABLES = {"events", "claims", "estimates", "timeline", "registrations", "projection_checkpoints"}


def _tables(conn: Connection) -> set[str]:
    return set(inspect(conn).get_table_names())


def _drift(conn: Connection) -> list[object]:
    with warnings.catch_warnings():
        # SQLite's reflection cannot read expression indexes; ``test_the_subject_index_...`` checks this one.
        warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
        found = compare_metadata(MigrationContext.configure(conn), metadata)
    return [d for d in found if not (isinstance(d, tuple) and d[1].name == CLAIM_SUBJECT_INDEX)]


def _plan(conn: Connection) -> str:
    query = claims_made_on(conn.dialect.name, "s")
    if conn.dialect.name == "sqlite":
        rows = conn.execute(sa.text(f"EXPLAIN QUERY PLAN {query.text}"), {"subject": "s"})
        return " ".join(str(row[-1]) for row in rows)
    conn.execute(sa.text("SET enable_seqscan = off"))  # an empty table: the plan must be able to use it
    rows = conn.execute(sa.text(f"EXPLAIN {query.text}"), {"subject": "s"})
    return " ".join(str(row[0]) for row in rows)


async def test_the_subject_index_exists_and_finds_a_subjects_claims(empty_database_url: str) -> None:
    """Time travel finds a subject's claims through an expression index on the log, which Alembic
    cannot compare: here it is checked by the plan of the very query that needs it."""
    db = Database(empty_database_url)
    try:
        await migrate.upgrade(db)
        async with db.engine.connect() as conn:
            assert CLAIM_SUBJECT_INDEX in await conn.run_sync(_plan)
        await migrate.downgrade(db, "0005")
    finally:
        await db.dispose()
    db = Database(empty_database_url)  # fresh connections: none planned against the old schema
    try:
        async with db.engine.connect() as conn:
            assert CLAIM_SUBJECT_INDEX not in await conn.run_sync(_plan)
    finally:
        await db.dispose()


def _source_plan(conn: Connection) -> str:
    query = source_claims("src", after=0, limit=50).compile(
        dialect=conn.dialect, compile_kwargs={"literal_binds": True}
    )
    if conn.dialect.name == "sqlite":
        return " ".join(str(row[-1]) for row in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {query}")))
    conn.execute(sa.text("SET enable_seqscan = off"))
    return " ".join(str(row[0]) for row in conn.execute(sa.text(f"EXPLAIN {query}")))


async def test_a_sources_claims_are_paged_through_an_index_from_0013(empty_database_url: str) -> None:
    """``GET /sources/{id}/claims`` reads a page through an index, not the whole claims view; before 0013
    it scanned (the plan names no such index)."""
    index = "ix_claims_source_id_made_position"
    db = Database(empty_database_url)
    try:
        await migrate.upgrade(db)
        async with db.engine.connect() as conn:
            assert index in await conn.run_sync(_source_plan)
        await migrate.downgrade(db, "0012_fewer_pages_per_write")
    finally:
        await db.dispose()
    db = Database(empty_database_url)
    try:
        async with db.engine.connect() as conn:
            assert index not in await conn.run_sync(_source_plan)
    finally:
        await db.dispose()


async def test_empty_to_head_has_every_table_and_no_drift(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    try:
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
        await migrate.upgrade(db)
        head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
        assert await migrate.current_revision(db) == head
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) >= TABLES
            assert await conn.run_sync(_drift) == []
        # Upgrading again is a no-op; downgrading removes everything it made.
        await migrate.upgrade(db)
        await migrate.downgrade(db, "base")
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_tables) & TABLES == set()
    finally:
        await db.dispose()


async def test_upgrade_keeps_the_log_and_serve_refolds_the_views(empty_database_url: str) -> None:
    """A log written at revision 0001 (before hashes) survives every later migration, gets its hash
    chain computed, and `serve` refolds the views that migrations emptied."""
    import datetime as dt
    import uuid

    import sqlalchemy as sa

    from timeline.cli.serving import _prepare_for_serving
    from timeline.domain.events import encode_event
    from timeline.store import audit, eventlog, queries

    from .helpers import claim_made, document, source, subject

    old_events = sa.table(
        "events",
        *(sa.column(c) for c in ("position", "stream_id", "stream_version", "type", "schema_version")),
        *(sa.column(c) for c in ("data", "metadata")),
        sa.column("event_id", sa.Uuid()),
        sa.column("valid_from", sa.Date()),
        sa.column("recorded_at", sa.DateTime(timezone=True)),
    )
    db = Database(empty_database_url)
    try:
        await migrate.upgrade(db, "0001")
        written = [
            ("subject-s", subject("s")),
            ("source-a", source("a")),
            ("document-d", document("d")),
            ("claim-c", claim_made("c", "a", 1500)),
        ]
        async with db.engine.begin() as conn:
            await conn.execute(
                sa.insert(old_events),
                [
                    {
                        "position": i,
                        "event_id": uuid.uuid4(),
                        "stream_id": stream,
                        "stream_version": 1,
                        "type": type(event).__name__,
                        "schema_version": 1,
                        "data": encode_event(event).decode(),
                        "metadata": '{"recorded_by":"old"}',
                        "valid_from": dt.date(2024, 10, 21),
                        "recorded_at": dt.datetime(2024, 10, 22, 8, 0, i, 1234, tzinfo=dt.UTC),
                    }
                    for i, (stream, event) in enumerate(written, start=1)
                ],
            )
        await migrate.upgrade(db)
        async with db.read() as conn:
            assert len(await eventlog.read_all(conn)) == 4
            assert await queries.claim(conn, "c") is None  # the views were emptied
            report = await audit.verify(conn)
        assert report.ok
        assert report.checked == 4
        assert await _prepare_for_serving(empty_database_url) == []  # not empty: nothing imported
        async with db.read() as conn:
            record = await queries.claim(conn, "c")
        assert record is not None
        assert record.claim.quantity is not None
        assert record.claim.quantity.value == 1500
    finally:
        await db.dispose()


async def test_0007_builds_the_tree_over_a_log_already_there(empty_database_url: str) -> None:
    """A log recorded before the Merkle tree existed gets its stored nodes from the migration, so proofs and
    the first signed checkpoint cover it."""
    from timeline import merkle, signing
    from timeline.app.imports import LoadedFixture, import_fixtures
    from timeline.store import audit, tree

    from .conftest import SEED

    db = Database(empty_database_url)
    try:
        await migrate.upgrade(db)
        await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
        async with db.engine.connect() as conn:
            expected = (await conn.execute(sa.select(tree.tree_nodes).order_by("level", "idx"))).all()
        assert expected  # 29 events: a node of 16 leaves at least
        await migrate.downgrade(db, "0006_core_read")
        async with db.engine.connect() as conn:
            assert "tree_nodes" not in await conn.run_sync(_tables)
        await migrate.upgrade(db)
        async with db.engine.connect() as conn:
            assert (await conn.execute(sa.select(tree.tree_nodes).order_by("level", "idx"))).all() == expected
    finally:
        await db.dispose()
    signer = signing.Signer.generate("test.example/log")
    db = Database(empty_database_url, signer=signer)
    try:
        async with db.write() as conn:
            await tree.sign_head(conn, signer, 29)
        async with db.read() as conn:
            latest = await tree.latest_checkpoint(conn)
            leaves = [merkle.event_leaf(r.hash) async for r in audit.rows(conn)]
        frontier = merkle.Frontier()
        for leaf in leaves:
            frontier.append(leaf)
        assert latest is not None
        assert (latest.size, latest.root_hash) == (29, frontier.root().hex())
    finally:
        await db.dispose()


async def test_0011_recounts_source_activity_with_statements_and_withdrawn_denials(
    empty_database_url: str,
) -> None:
    """Activity counted before statements and withdrawn denials were is emptied by 0011 and recounted
    from the log, so a source's statements and withdrawals show up on a database that was already running."""
    from timeline.app.imports import LoadedFixture, import_fixtures
    from timeline.store import activity, projector

    from .conftest import ROOT, SEED

    follow_ups = ROOT / "fixtures" / "invented" / "002_statements_and_relations.yaml"
    db = Database(empty_database_url)
    try:
        await migrate.upgrade(db, "0010_estimates_by_kind")
        fixtures = [LoadedFixture(str(p), p.read_bytes()) for p in (SEED, follow_ups)]
        await import_fixtures(db, fixtures, recorded_by="test")
        async with db.engine.begin() as conn:
            head = (await conn.execute(sa.text("SELECT max(position) FROM events"))).scalar_one()
            # What 0010's projection leader had left: counts without the new kinds, checkpoint at the head.
            await conn.execute(
                sa.text(
                    "INSERT INTO source_activity (source_id, claims_made, denials, confirmations, evidence,"
                    " last_position) VALUES ('kremlin-spokesperson', 0, 1, 0, 0, :head)"
                ),
                {"head": head},
            )
            # As 0010's code saved it (today's also clears the failure column 0017 adds).
            await conn.execute(
                sa.text(
                    "INSERT INTO projection_checkpoints (name, position, updated_at) "
                    "VALUES (:name, :head, CURRENT_TIMESTAMP)"
                ),
                {"name": activity.name, "head": head},
            )
        await migrate.upgrade(db)
        async with db.read() as conn:
            assert await activity.of(conn, "kremlin-spokesperson") is None
            assert await projector.checkpoint(conn, activity.name) == 0
        assert await projector.catch_up(db, activity) == head
        async with db.read() as conn:
            spokesperson = await activity.of(conn, "kremlin-spokesperson")
            kremlin = await activity.of(conn, "kremlin")
        assert spokesperson is not None
        assert kremlin is not None
        assert (spokesperson["statements"], spokesperson["denials"]) == (1, 1)
        assert kremlin["denials_withdrawn"] == 1
        # Down again, the columns go and the projection is reset once more.
        await migrate.downgrade(db, "0010_estimates_by_kind")
        async with db.engine.connect() as conn:
            columns = await conn.run_sync(
                lambda c: {col["name"] for col in inspect(c).get_columns("source_activity")}
            )
            rows = (await conn.execute(sa.text("SELECT count(*) FROM source_activity"))).scalar_one()
        assert {"statements", "denials_withdrawn"}.isdisjoint(columns)
        assert rows == 0
    finally:
        await db.dispose()


async def test_two_runners_starting_a_projection_from_nothing_count_each_event_once(
    database_url: str,
) -> None:
    """Two processes catching up a projection that has no checkpoint yet (after a reset, say) apply each
    batch once between them: neither fails, and the counts equal those of one runner."""
    import asyncio
    import contextlib
    from collections.abc import Sequence

    from sqlalchemy.ext.asyncio import AsyncConnection

    from timeline.app.imports import LoadedFixture, import_fixtures
    from timeline.store import activity, projector
    from timeline.store.eventlog import RecordedEvent

    from .conftest import SEED

    class Gate:
        """The activity projection, holding its first batch until both runners are applying one (or 2 s
        have passed, when a runner is rightly kept waiting for the other's checkpoint)."""

        name, tables = activity.name, activity.tables

        def __init__(self) -> None:
            self.arrived = 0
            self.both = asyncio.Event()

        async def apply(self, conn: AsyncConnection, batch: Sequence[RecordedEvent]) -> None:
            self.arrived += 1
            if self.arrived == 2:
                self.both.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.both.wait(), 2)
            await activity.apply(conn, batch)

    first, second = Database(database_url), Database(database_url)
    try:
        await migrate.upgrade(first)
        await import_fixtures(first, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="test")
        await projector.catch_up(first, activity)
        sources = ("kremlin", "volodymyr-zelenskyy", "south-korea-nis")
        async with first.read() as conn:
            alone = {s: await activity.of(conn, s) for s in sources}
        async with first.serial() as conn:
            await projector.reset(conn, activity)
        gate = Gate()
        await asyncio.gather(projector.catch_up(first, gate), projector.catch_up(second, gate))
        async with first.read() as conn:
            together = {s: await activity.of(conn, s) for s in sources}
        assert together == alone
    finally:
        await first.dispose()
        await second.dispose()


_REBUILT = ("events", "timeline", "estimates", "tree_nodes", "log_checkpoints", "claims")


async def _contents(db: Database) -> dict[str, list[tuple[object, ...]]]:
    async with db.engine.connect() as conn:
        return {
            t: sorted(tuple(r) for r in await conn.execute(sa.text(f"SELECT * FROM {t}"))) for t in _REBUILT
        }


async def _refuses_edits(db: Database) -> None:
    for edit in ("UPDATE events SET data = '{}' WHERE position = 3", "DELETE FROM events"):
        async with db.engine.connect() as conn:
            with pytest.raises(sa.exc.DBAPIError, match="append-only"):
                await conn.execute(sa.text(edit))


async def test_0012_rebuilds_the_tables_keeping_rows_triggers_and_indexes(empty_database_url: str) -> None:
    """0012 rebuilds five tables on SQLite (drops two indexes on both databases): a signed log, its tree and
    views come through down and up again row for row, the log still refuses edits, time travel's index is
    still used, and writing goes on from the head with the chain and checkpoints verifying."""
    from timeline import signing
    from timeline.app.imports import LoadedFixture, import_fixtures
    from timeline.store import audit

    from .conftest import ROOT, SEED

    follow_ups = ROOT / "fixtures" / "invented" / "002_statements_and_relations.yaml"
    signer = signing.Signer.generate("test.example/log")

    db = Database(empty_database_url, signer=signer)
    try:
        await migrate.upgrade(db)
        await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
        before = await _contents(db)
        assert all(before[t] for t in _REBUILT)
        await migrate.downgrade(db, "0011_activity_counts_statements")
        assert await _contents(db) == before
        await _refuses_edits(db)
        await migrate.upgrade(db)
        assert await _contents(db) == before
        await _refuses_edits(db)
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_drift) == []
    finally:
        await db.dispose()
    db = Database(empty_database_url, signer=signer)  # fresh connections: planned against the new tables
    try:
        async with db.engine.connect() as conn:
            assert CLAIM_SUBJECT_INDEX in await conn.run_sync(_plan)
        await import_fixtures(db, [LoadedFixture("more", follow_ups.read_bytes())], recorded_by="test")
        async with db.read() as conn:
            positions = [p for (p,) in await conn.execute(sa.text("SELECT position FROM events"))]
            report = await audit.verify(conn, verifier=signer.verifier_text())
        assert sorted(positions) == list(range(1, len(positions) + 1))
        assert len(positions) > len(before["events"])
        assert report.ok
        assert report.signatures_checked
        assert report.checkpoints_checked >= 2
    finally:
        await db.dispose()


async def test_0015_recreates_snapshots_and_the_projector_takes_them_again(empty_database_url: str) -> None:
    """Snapshots of the old shape are dropped with the projector's checkpoint for them, so the projector
    follows the log again and takes the same snapshots in the new shape, from which cuts answer as the log."""
    from timeline.app.imports import LoadedFixture, import_fixtures
    from timeline.store import eventlog, projector, snapshots, travel
    from timeline.store.schema import time_travel_snapshots

    from .conftest import SEED

    subject = "dprk-troops-to-russia"

    async def kept() -> list[tuple[str, int]]:
        async with db.read() as conn:
            s = time_travel_snapshots
            found = await conn.execute(sa.select(s.c.subject_id, s.c.position).order_by(s.c.position))
            return [(row.subject_id, row.position) for row in found]

    db = Database(empty_database_url)
    try:
        await migrate.upgrade(db)
        await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
        await projector.catch_up(db, snapshots.Taker(db, every=3), size=4)
        taken = await kept()
        assert taken
        await migrate.downgrade(db, "0014_travel_subject_position")
        await migrate.upgrade(db)
        assert await kept() == []
        await projector.catch_up(db, snapshots.Taker(db, every=3), size=4)
        assert await kept() == taken
        async with db.read() as conn:
            head = await eventlog.head_position(conn)
            read = await travel.subject_views(conn, subject, head, None)
            folded = await travel.subject_views(conn, subject, head, None, from_snapshots=False)
        assert read.claims == folded.claims
        assert read.timeline == folded.timeline
    finally:
        await db.dispose()


async def test_0019_stores_snapshots_with_lz4_where_the_server_has_it(pg_url: str) -> None:
    """A snapshot kept after 0019 is compressed with lz4 on a PostgreSQL built with it (pglz, the default,
    otherwise); downgrading gives the parts back the server's default."""
    parts = ("state", "earlier", "versions")
    db = Database(pg_url)
    try:
        async with db.read() as conn:
            version = (await conn.execute(sa.text("SHOW server_version_num"))).scalar_one()
        if int(version) < 140000:
            pytest.skip("PostgreSQL before 14 has no per-column compression: 0019 leaves it alone")
        await import_fixtures(db, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="test")
        async with db.read() as conn:
            offered = (
                await conn.execute(
                    sa.text("SELECT enumvals FROM pg_settings WHERE name = 'default_toast_compression'")
                )
            ).scalar_one()
            head = await eventlog.head_position(conn)
            snapshot = await travel.take(conn, SEED_SUBJECT, head)
        async with db.write() as conn:
            await snapshots.keep(conn, SEED_SUBJECT, snapshot)
            used = (
                await conn.execute(
                    sa.text("SELECT pg_column_compression(state), length(state) FROM time_travel_snapshots")
                )
            ).one()
        method = "lz4" if "lz4" in offered else "pglz"
        assert used[1] > 2048, "a part this small would be stored uncompressed, proving nothing"
        assert used[0] == method
        await migrate.downgrade(db, "0018_snapshot_counts")
        async with db.engine.connect() as conn:
            declared = await conn.execute(
                sa.text(
                    "SELECT attname, attcompression::text FROM pg_attribute "
                    "WHERE attrelid = 'time_travel_snapshots'::regclass AND attname = ANY(:parts)"
                ),
                {"parts": list(parts)},
            )
            # The server's default again, as before 0019.
            assert {name: str(kind) for name, kind in declared} == dict.fromkeys(parts, "")
    finally:
        await db.dispose()
