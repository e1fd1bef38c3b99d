"""The benchmark suite's own arithmetic: what it reads out of wrk decides the table's verdicts."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.fixtures import parse, to_events
from timeline.service import Recorder
from timeline.store import audit, migrate, schema
from timeline.store.database import Database
from timeline_bench import __main__ as bench_main
from timeline_bench import appends, baselines, http, imports, measure, peer, pipeline, seed
from timeline_bench.generator import generate
from timeline_bench.wrk import parse_wrk

from .conftest import PG_URL, _pg_dsn

WRK_OUTPUT = """\
Running 4s test @ http://127.0.0.1:8123/subjects/subject-0/estimates
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    64.04ms  172.81ms   1.35s    91.99%
    Req/Sec     2.14k   596.45     2.94k    62.50%
  Latency Distribution
     50%  812.00us
     75%   13.61ms
     90%   30.20ms
     99%    1.35s
  8519 requests in 4.00s, 21.33MB read
  Socket errors: connect 0, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:   2129.70
Transfer/sec:      5.33MB
"""


def test_wrk_rates_percentiles_in_every_unit_and_errors_are_read() -> None:
    load = parse_wrk(WRK_OUTPUT)
    assert load.rate == 2129.70
    assert load.p50 == 0.812
    assert load.p99 == 1350.0
    assert load.errors == 12  # 7 error answers, 2 read errors, 3 timeouts


def test_a_clean_run_has_no_errors() -> None:
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    assert parse_wrk(clean).errors == 0


def test_the_generated_log_has_one_hot_subject() -> None:
    claims = [e for e in generate(20_000) if type(e).__name__ == "ClaimMade"]
    hot = sum(1 for c in claims if c.subject_id == "subject-0")  # type: ignore[attr-defined]
    others = sum(1 for c in claims if c.subject_id == "subject-1")  # type: ignore[attr-defined]
    assert 0.005 < hot / len(claims) < 0.02
    assert hot > others


async def _rows(url: str, table: sa.Table, *columns: str) -> list[tuple[object, ...]]:
    db = Database(url)
    try:
        async with db.read() as conn:
            chosen = [table.c[c] for c in columns] if columns else list(table.c)
            result = await conn.execute(sa.select(*chosen).order_by(*table.primary_key.columns))
            return [tuple(row) for row in result]
    finally:
        await db.dispose()


async def test_the_fast_seed_records_what_the_write_path_would(
    database_url: str, empty_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The big benchmark logs skip the rules to be built in minutes; the same events through the write path
    # must be accepted and give the same log (but for ids, times and hashes) and the same views. Small
    # transactions, so streams and the hash chain carry over from one to the next, and the last is empty.
    monkeypatch.setattr(seed, "SEED_CHUNK", 1_000)
    count = 3_000
    assert await seed.seed_log(database_url, count) == count
    checked = Database(empty_database_url)
    try:
        await migrate.upgrade(checked)
        async with checked.write() as conn:
            recorder = Recorder(conn, recorded_by="bench", label="seed")
            await recorder.record_all(list(generate(count)), origin="")
            await recorder.finish()
    finally:
        await checked.dispose()
    logged = ("position", "stream_id", "stream_version", "type", "data", "metadata", "valid_from")
    assert await _rows(database_url, schema.events, *logged) == await _rows(
        empty_database_url, schema.events, *logged
    )
    for table in (schema.claims, schema.estimates, schema.timeline, schema.registrations):
        seeded = await _rows(database_url, table)
        assert seeded, table.name
        assert seeded == await _rows(empty_database_url, table), table.name


def test_peak_rss_is_the_commands_own_not_the_largest_earlier_childs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rebuild's memory figure must be its own: not a server's (or any child's) that ran before it, nor
    the benchmark process's own memory."""
    (tmp_path / "big.py").write_text("b = b'x' * (300 * 1024 * 1024)\n")
    (tmp_path / "small.py").write_text("pass\n")
    (tmp_path / "fails.py").write_text("raise SystemExit(3)\n")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    ballast = b"y" * (200 * 1024 * 1024)  # this process is large, as the benchmark's can be
    try:
        assert measure.peak_rss_mb("big", []) > 300
        assert measure.peak_rss_mb("small", []) < 100
        with pytest.raises(subprocess.CalledProcessError):
            measure.peak_rss_mb("fails", [])
    finally:
        del ballast


async def test_the_peers_projection_keeps_the_same_latest_estimates(database_url: str) -> None:
    # The rebuild's baseline must do the same job: from the same log, the peer's view chooses the very claim
    # timeline's estimates view chooses under every (subject, metric, source).
    count = 1_500
    await seed.seed_log(database_url, count)
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    last = await asyncio.to_thread(peer.load, dialect, database_url, count)
    rate = await asyncio.to_thread(peer.project, dialect, database_url, last, 600.0)
    assert rate > 0
    rows = await _rows(
        database_url, schema.estimates, "subject_id", "metric", "source_id", "asserted_claim_id"
    )
    ours = set(rows)
    assert len(ours) > 100
    assert all(chosen is not None for *_, chosen in rows)  # the bench log has assertions, no projections
    assert set(await asyncio.to_thread(peer.estimates, dialect, database_url)) == ours


def test_the_peer_appends_at_the_same_durability_as_timeline(tmp_path: Path) -> None:
    # The library opens SQLite at its default synchronous=FULL (a sync per commit); compared so, a ratio
    # would measure durability, not the two designs. Both run at WAL with synchronous=NORMAL (1).
    recorder = baselines.peer_recorder("sqlite", f"sqlite:///{tmp_path / 'bench.db'}")
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 1
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"


class _Slowed:
    """A connection whose setup and teardown take ``slow`` seconds a call and whose inserts take ``step``:
    the seconds a baseline reports must hold what it measures and none of the rest."""

    def __init__(self, conn: Any, slow: float, step: float) -> None:
        self.conn, self.slow, self.step, self.inserts = conn, slow, step, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    def _inserting(self) -> None:
        self.inserts += 1
        time.sleep(self.step)

    # sqlite3: PRAGMA and CREATE TABLE are setup; BEGIN, COMMIT and SELECT belong to what is timed.
    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith(("PRAGMA", "CREATE")):
            time.sleep(self.slow)
        return self.conn.execute(sql, *args)

    def executemany(self, sql: str, rows: Any) -> Any:
        self._inserting()
        return self.conn.executemany(sql, rows)

    def close(self) -> Any:
        time.sleep(self.slow)
        return self.conn.close()


class _SlowedPg(_Slowed):
    async def execute(self, sql: str, *args: Any) -> Any:  # type: ignore[override]
        await asyncio.sleep(self.slow)
        return await self.conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Any) -> Any:  # type: ignore[override]
        self._inserting()
        return await self.conn.executemany(sql, rows)

    async def copy_records_to_table(self, table: str, **kwargs: Any) -> Any:
        self._inserting()
        return await self.conn.copy_records_to_table(table, **kwargs)

    async def close(self) -> Any:  # type: ignore[override]
        await asyncio.sleep(self.slow)
        return await self.conn.close()


def _slow_connections(
    monkeypatch: pytest.MonkeyPatch, dialect: str, slow: float, step: float
) -> list[_Slowed]:
    """Make the baselines' connections of ``dialect`` slow to open (and, as ``_Slowed`` says, to set up and
    close); the connections made, as they are made."""
    made: list[_Slowed] = []
    if dialect == "sqlite":
        real_connect = baselines.sqlite3.connect

        def slow_connect(*args: Any, **kwargs: Any) -> Any:
            time.sleep(slow)
            made.append(_Slowed(real_connect(*args, **kwargs), slow, step))
            return made[-1]

        monkeypatch.setattr(baselines.sqlite3, "connect", slow_connect)
    else:
        real_pg_connect = baselines.asyncpg.connect

        async def slow_pg_connect(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(slow)
            made.append(_SlowedPg(await real_pg_connect(*args, **kwargs), slow, step))
            return made[-1]

        monkeypatch.setattr(baselines.asyncpg, "connect", slow_pg_connect)
    return made


@pytest.mark.parametrize(("per_transaction", "copy"), [(1, False), (4, False), (4, True)])
async def test_the_raw_baseline_times_its_inserts_not_its_setup_or_teardown(
    empty_database_url: str, monkeypatch: pytest.MonkeyPatch, per_transaction: int, copy: bool
) -> None:
    # Every rate a raw baseline is compared with leaves out connecting, creating tables and closing; timed
    # with them, the baseline ran at 0.38-0.91x its rate and flattered every ratio to it. Here each of those
    # steps takes ``slow`` and each insert ``step``: the seconds reported must hold the inserts, not the rest.
    # Twelve inserts of ``step`` stay well under ``slow`` even on a loaded host's PostgreSQL commits.
    slow, step = 0.4, 0.005
    dialect = make_url(empty_database_url).get_backend_name()
    copied = copy and dialect == "postgresql"  # SQLite has no COPY: it inserts in batches either way
    made = _slow_connections(monkeypatch, dialect, slow, step)
    rows = baselines.raw_rows(12, "t")
    start = time.perf_counter()
    seconds = await baselines.raw_insert(dialect, empty_database_url, rows, per_transaction, copy=copy)
    assert time.perf_counter() - start >= 3 * slow
    [conn] = made
    assert conn.inserts == (1 if copied else len(rows) // per_transaction)
    assert conn.inserts * step <= seconds < slow
    monkeypatch.undo()
    if dialect == "sqlite":
        with baselines.sqlite3.connect(baselines.sqlite_path(empty_database_url)) as lite:
            stored = lite.execute("SELECT position FROM raw_events ORDER BY position").fetchall()
    else:
        pg = await asyncpg.connect(baselines.pg_dsn(empty_database_url))
        try:
            stored = await pg.fetch("SELECT position FROM raw_events ORDER BY position")
        finally:
            await pg.close()
    assert [r[0] for r in stored] == [r[0] for r in rows]


def test_a_target_beyond_the_bare_rows_rate_is_named_in_the_note() -> None:
    # 1.5x a peer at 17,048 events/s is beyond a raw INSERT at 18,404: the table must say so, in numbers.
    note = appends.above_floor(1.5 * 17_048, 18_404, "a raw INSERT and COMMIT of each event")
    assert "25,572 events/s" in note
    assert "1.39x" in note
    assert "18,404 events/s" in note
    assert appends.above_floor(1.5 * 467, 1_008, "a raw INSERT and COMMIT of each event") == ""


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()


async def _same_views(written: str, copied: str) -> None:
    """The events and the claim, timeline and estimate rows of ``copied`` are those of ``written``."""
    for table in (schema.events, schema.claims, schema.timeline, schema.estimates):
        rows = await _rows(written, table)
        assert rows, table.name
        assert await _rows(copied, table) == rows, table.name


async def test_the_read_baseline_times_its_reading_not_its_connection(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The rebuild's floor, raw read+decode, is compared with a rebuild that reads on a connection it holds:
    # connecting and closing (a sixth of the read on PostgreSQL at 20,000 events) must stay out of it.
    slow = 0.3
    await appends.timeline_writes(database_url, 5, 1, "r")
    dialect = make_url(database_url).get_backend_name()
    made = _slow_connections(monkeypatch, dialect, slow, 0)
    start = time.perf_counter()
    events, seconds = await baselines.read_and_decode(dialect, database_url)
    assert time.perf_counter() - start >= 2 * slow  # connected and closed, each slowly
    assert len(made) == 1
    assert events == appends.SETUP_EVENTS + 5
    assert 0 < seconds < slow


async def test_the_rows_alone_baseline_stores_what_the_write_path_stored(
    database_url: str, empty_database_url: str
) -> None:
    # The floor a write target is judged against must be the very rows timeline wrote, every one of them,
    # batched as the writes were: a baseline storing fewer or smaller rows would flatter the targets' reach.
    await appends.timeline_writes(database_url, 250, 100, "t")
    await _migrate(empty_database_url)
    dialect = sa.engine.make_url(database_url).get_backend_name()
    rate = await baselines.stored_rows(dialect, database_url, empty_database_url, 100, appends.SETUP_EVENTS)
    assert rate > 0
    await _same_views(database_url, empty_database_url)
    assert len(await _rows(database_url, schema.claims)) == 250


async def _imported(text: bytes, written: str, empty: str) -> int:
    """Import ``text`` into ``written`` and migrate ``empty``, as the import benchmark does before measuring
    its baselines; the events appended."""
    db = Database(written)
    try:
        [result] = await import_fixtures(db, [LoadedFixture("bench.yaml", text)], recorded_by="bench")
    finally:
        await db.dispose()
    await _migrate(empty)
    return result.appended


async def test_the_import_floor_stores_every_row_the_import_stored_in_one_transaction(
    database_url: str, empty_database_url: str
) -> None:
    # The import's floor is its own rows in one transaction (by COPY on PostgreSQL): every event, claim,
    # timeline entry and estimate it wrote, or the floor would flatter what an import could reach.
    appended = await _imported(imports._fixture_text(120), database_url, empty_database_url)
    dialect = sa.engine.make_url(database_url).get_backend_name()
    copy = dialect == "postgresql"
    rate = await baselines.stored_rows(dialect, database_url, empty_database_url, appended, 0, copy=copy)
    assert rate > 0
    await _same_views(database_url, empty_database_url)
    assert len(await _rows(database_url, schema.events)) == appended


def test_the_pipeline_reads_the_fixture_in_chunks_as_the_import_reads_it_whole() -> None:
    # The pipeline's reader hands over chunks of the fixture; together they must propose exactly the events
    # the whole file does, in its order, or the baseline would be measured on other work.
    text = imports._fixture_text(1_003).decode()
    parts = pipeline.chunks(text, 250)
    assert len(parts) == 5
    whole = [event for _, event in to_events(parse(text, "bench.yaml"))]
    read = []
    for index, part in enumerate(parts):
        events = [event for _, event in to_events(parse(part, "bench.yaml"))]
        read.extend(events[1:] if index else events)  # each later chunk repeats the document
    assert read == whole
    with pytest.raises(ValueError, match="layout"):
        pipeline.chunks("document: {id: x}\n", 250)


async def test_the_pipeline_stores_the_imports_events_chained_and_its_view_rows(
    database_url: str, empty_database_url: str
) -> None:
    # The pipeline without rules must still store what an import stores for the fixture's entries: every
    # event, at the same positions and versions with the same data (its metadata is lighter), chained so that
    # `timeline verify` accepts the log, and every view row. Storing less, or chaining nothing, would raise
    # the pipeline's rate and misjudge the target.
    text = imports._fixture_text(700)
    appended = await _imported(text, database_url, empty_database_url)
    dialect = sa.engine.make_url(database_url).get_backend_name()
    rate = await pipeline.pipelined(dialect, text, database_url, empty_database_url, size=100)
    assert rate > 0
    logged = ("position", "stream_id", "stream_version", "type", "schema_version", "data", "valid_from")
    stored = await _rows(empty_database_url, schema.events, *logged)
    assert len(stored) == appended
    assert stored == await _rows(database_url, schema.events, *logged)
    for table in (schema.claims, schema.timeline, schema.estimates):
        imported = await _rows(database_url, table)
        assert imported, table.name
        assert await _rows(empty_database_url, table) == imported, table.name
    piped = Database(empty_database_url)
    try:
        async with piped.read() as conn:
            verified = await audit.verify(conn)
    finally:
        await piped.dispose()
    assert verified.ok, verified.first_break
    assert verified.checked == appended


async def test_a_pipeline_whose_reader_fails_says_so_and_leaves_no_process(
    database_url: str, empty_database_url: str
) -> None:
    # A fixture the reader cannot read (here in its last chunk) must end the measurement with an error that
    # says the reader stopped, not with a rate, a hang, or a process left behind.
    text = imports._fixture_text(300)
    await _imported(text, database_url, empty_database_url)
    broken = text[: text.rindex(b"- type:")] + b"- type: [claim\n"
    dialect = sa.engine.make_url(database_url).get_backend_name()
    before = multiprocessing.active_children()
    with pytest.raises(RuntimeError, match="reading process"):
        await pipeline.pipelined(dialect, broken, database_url, empty_database_url, size=100)
    assert multiprocessing.active_children() == before


def test_a_reader_that_goes_quiet_without_ending_is_an_error_not_a_hang(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A reader stuck without exiting (its pipe open, nothing sent) must not hold the benchmark forever: the
    # wait for its next message is bounded (120 s in a run, shortened here) and then names the reader.
    monkeypatch.setattr(pipeline, "_PATIENCE", 0.2)
    received, sent = multiprocessing.Pipe(duplex=False)
    inbox = pipeline._Inbox(received, 1)
    try:
        sent.send_bytes(b"ready")
        assert inbox.ready() == b"ready"
        with pytest.raises(RuntimeError, match=r"sent nothing for 0\.2 s"):
            inbox.take()
    finally:
        sent.close()  # the draining thread then sees the end and stops
        inbox.join()
        received.close()


async def test_the_import_benchmark_judges_its_run_against_the_baselines_of_that_run(
    backend: str, pg_template: object
) -> None:
    # The target, the ratio, "met" and the note must all come from this run's own baselines: a table that
    # judged against another figure (timeline's own rate, an old run's) would mislead whoever reads it.
    if backend == "postgresql" and pg_template is None:
        pytest.skip("PostgreSQL is unreachable (set TIMELINE_TEST_REQUIRE_POSTGRES=1 to fail instead)")
    dbs = measure.Databases(measure.Config(imports=60, repeats=1, postgres=PG_URL))
    try:
        result = await imports.bench_import(dbs, backend)
    finally:
        await dbs.drop_all()
    raw = "raw COPY" if backend == "postgresql" else "raw batched INSERT"
    assert set(result.baselines) == {
        raw,
        "parsing the YAML alone",
        "timeline's rows alone",
        imports.PIPELINED,
    }
    floor = result.baselines[raw].median
    wanted = 10 * imports.FILED_RATIO[backend]
    assert result.ratio == pytest.approx(result.timeline.median / floor)
    assert result.met == (result.ratio >= wanted)
    assert f">= {wanted:.3f}x {raw}" in result.target
    both = imports._in_turn(
        result.baselines["parsing the YAML alone"].median, result.baselines["timeline's rows alone"].median
    )
    assert f"({both:,.0f} events/s)" in result.note
    # Each clause is named by what the target is compared with: the target can be above one and not the other.
    beyond_both = (
        f"the target ({wanted * floor:,.0f} events/s) is {wanted * floor / both:.2f}x parsing the YAML"
    )
    assert (beyond_both in result.note) == (wanted * floor > both)
    bare = result.baselines[imports.PIPELINED].median
    assert (f"storing, pipelined ({bare:,.0f} events/s" in result.note) == (wanted * floor > bare)


def test_the_import_target_is_ten_times_the_filed_runs_ratio_to_raw() -> None:
    # #14's "10x today's rate" is read from the run it cites, as a ratio to the raw baseline of that run.
    filed = msgspec.json.decode((Path(__file__).parent.parent / "bench" / "results.json").read_bytes())
    ratios = {r["database"]: r["ratio"] for r in filed["results"] if r["benchmark"].startswith("import")}
    assert ratios == imports.FILED_RATIO
    assert imports.TARGET_TIMES == 10


def test_a_run_writes_where_git_ignores_it_and_never_over_a_committed_run() -> None:
    # bench/results.json is the run issue #14 was filed on (the import target's constants are checked
    # against it); a run that wrote there by default had overwritten it.
    root = Path(__file__).parent.parent
    default = bench_main.arguments().parse_args([]).json
    assert default != Path("bench/results.json")
    assert (root / "bench" / "results.json").is_file()
    ignored = (root / ".gitignore").read_text().splitlines()
    assert f"/{default}" in ignored, f"{default} is not ignored by git"


def test_an_import_target_beyond_parsing_then_storing_is_named_in_the_note() -> None:
    assert imports._in_turn(40_000, 60_000) == pytest.approx(24_000)
    note = imports.above_parsing_then_rows(42_000, 24_000)
    assert "42,000 events/s" in note
    assert "1.75x" in note
    assert "24,000 events/s" in note
    assert imports.above_parsing_then_rows(20_000, 24_000) == ""


def test_an_import_target_beyond_the_pipeline_without_rules_is_named_in_the_note() -> None:
    note = imports.above_pipelined(41_306, 28_744)
    assert note.startswith("the target (41,306 events/s) is 1.44x parsing")
    assert "(28,744 events/s: no rules or folding)" in note
    assert imports.above_pipelined(28_000, 28_744) == ""


def test_a_target_beyond_timelines_own_rows_is_named_in_the_note() -> None:
    note = appends.above_rows(19_001, 16_453)
    assert "19,001 events/s" in note
    assert "1.15x" in note
    assert "16,453 events/s" in note
    assert appends.above_rows(1_056, 1_630) == ""


def test_postgresql_cpu_time_does_not_go_back_when_a_backend_is_reaped_mid_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A backend (5 s) ends while /proc is read: the postmaster's entry comes first, its reaped children's
    # time not yet grown by the backend's, and the backend's entry is gone by the time it is read. The scans
    # after see it reaped. Counting that first scan made the sum go back from 15 to 10.
    tick = os.sysconf("SC_CLK_TCK")

    def entry(pid: str, used: int) -> tuple[Path, str, list[str]]:
        fields = ["S", "1", *["0"] * 9, str(used * tick), "0", "0", "0"]
        return Path(f"/proc/{pid}"), "postgres", fields

    scans = iter(
        [
            [entry("10", 10)],  # the backend gone, not yet counted in its parent's
            [entry("10", 15)],  # reaped
            [entry("10", 15), entry("30", 1)],  # another backend
            [entry("10", 15)],  # it ends during this scan, as the first did
            [entry("10", 16)],  # reaped
        ]
    )
    monkeypatch.setattr(measure, "_processes", lambda: iter(next(scans)))
    assert measure.postgres_cpu_seconds() == 15
    assert measure.postgres_cpu_seconds() == 16


async def test_cpu_time_is_counted_for_postgresql_on_this_machine(
    pg_template: object,
) -> None:
    # The HTTP write row weighs each process's CPU a write against what the machine's cores allow.
    if pg_template is None:
        pytest.skip("PostgreSQL is unreachable")
    if make_url(PG_URL).host not in ("127.0.0.1", "localhost", "::1"):
        pytest.skip("PostgreSQL runs on another machine: its processes are not this one's to count")
    conn = await asyncpg.connect(_pg_dsn())
    try:
        before = measure.postgres_cpu_seconds()
        await conn.fetchval("SELECT count(*) FROM generate_series(1, 4000000)")
        after = measure.postgres_cpu_seconds()  # the backend is still there to be counted
    finally:
        await conn.close()
    assert before is not None
    assert after is not None
    assert after - before >= 0.1


def test_cpu_time_is_counted_for_a_child_that_ended() -> None:
    # What wrk, run to its end, cost.
    before = measure.children_cpu_seconds()
    subprocess.run([sys.executable, "-c", "sum(range(20_000_000))"], check=True)
    assert measure.children_cpu_seconds() - before >= 0.1


def test_the_http_write_rows_note_weighs_each_processs_cpu_against_the_cores() -> None:
    cost = http.Cost(server=0.8, postgres=0.5, wrk=0.1)
    floor = http.Cost(server=0.25, postgres=None, wrk=0.05)
    cores = os.cpu_count() or 1
    assert http._budget(cost, floor, 2000) == (
        "CPU a write: server 0.80 ms, PostgreSQL 0.50 ms, wrk 0.10 ms, 1.40 ms in all; "
        f"2,000 writes/s on {cores} cores leave {cores / 2:.2f} ms a write; "
        "a constant-route request costs server 0.25 + wrk 0.05 ms"
    )
    elsewhere = http.Cost(server=0.8, postgres=None, wrk=0.1)
    assert "0.90 ms in all" in http._budget(elsewhere, floor, 2000)
    projected = http.Cost(server=0.8, postgres=0.5, wrk=0.1, projections=0.2)
    assert "server 0.80 ms, projection process 0.20 ms, PostgreSQL 0.50 ms, wrk 0.10 ms, 1.60 ms in all" in (
        http._budget(projected, floor, 2000)
    )
    # With --workers N the server's figure is its API processes' together.
    assert "server 0.80 ms (2 API processes), projection process 0.20 ms," in http._budget(
        projected, floor, 2000, 2
    )


def _busy_child(*argv: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", "sum(range(30_000_000)); input()", *argv], stdin=subprocess.PIPE
    )


@pytest.mark.parametrize("projections", [True, False])
def test_a_servers_running_children_are_counted_as_its_projection_process_or_its_workers(
    projections: bool,
) -> None:
    # `serve` on PostgreSQL runs its projections in a child process (`timeline project`), and with
    # --workers N its API processes as children too: each one's CPU is part of a write's cost, under its name.
    # Other children of the test process (a resource tracker, say) sit idle: what the other kind counts
    # does not move while this child works.
    other = measure.offspring_cpu_seconds(os.getpid(), projections=not projections)
    child = _busy_child("project") if projections else _busy_child()
    try:
        deadline = time.monotonic() + 30
        while measure.offspring_cpu_seconds(os.getpid(), projections=projections) < 0.1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert measure.offspring_cpu_seconds(os.getpid(), projections=not projections) == other
    finally:
        child.communicate(b"\n")
