"""The benchmarks: timeline beside the raw database and the `eventsourcing` library, in one run.

Each benchmark measures a rate (events/s or requests/s) several times and keeps median, min and max; the
target is a ratio to a baseline measured in the same run, so it holds on a noisy machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import msgspec
import sqlalchemy as sa
import yaml
from eventsourcing import postgres as es_postgres
from eventsourcing import sqlite as es_sqlite
from eventsourcing.persistence import StoredEvent
from sqlalchemy.engine import make_url

from timeline import signing
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain.events import ClaimMade, Quantity, StatedDate, encode_event
from timeline.domain.streams import references, stream_of
from timeline.groupcommit import Committer
from timeline.service import Recorder, valid_from
from timeline.store import backup, eventlog, migrate, schema, tokens, views
from timeline.store.database import Database
from timeline.store.eventlog import Metadata, NewEvent
from timeline_bench.generator import generate
from timeline_bench.travel import Cuts, time_cuts


class Stats(msgspec.Struct):
    """A rate measured several times."""

    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: list[float]) -> Stats:
        return cls(median=statistics.median(values), min=min(values), max=max(values))


class Result(msgspec.Struct, kw_only=True):
    """One row of the table."""

    benchmark: str
    database: str
    unit: str
    timeline: Stats
    baselines: dict[str, Stats]
    target: str
    ratio: float | None
    met: bool | None
    note: str = ""


class Config(msgspec.Struct, kw_only=True):
    """How big the runs are."""

    events: int = 20_000
    imports: int = 10_000
    singles: int = 300
    batches: int = 20
    repeats: int = 3
    http_seconds: float = 4.0
    connections: int = 32
    postgres: str = "postgresql://postgres@127.0.0.1:5432/test"


async def _timed(work: Callable[[], Awaitable[int]]) -> float:
    start = time.perf_counter()
    count = await work()
    return count / (time.perf_counter() - start)


async def _repeat(config: Config, work: Callable[[], Awaitable[Callable[[], Awaitable[int]]]]) -> Stats:
    """Prepare (untimed) and run ``work`` ``repeats`` times; the rates of the timed parts."""
    rates = []
    for _ in range(config.repeats):
        timed = await work()
        rates.append(await _timed(timed))
    return Stats.of(rates)


# Databases ---------------------------------------------------------------------------------------------


class Databases:
    """Creates fresh databases for each measurement and removes them at the end."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.tmp = Path(tempfile.mkdtemp(prefix="timeline-bench-"))
        self.pg_names: list[str] = []

    def _pg_dsn(self, name: str | None = None) -> str:
        url = make_url(self.config.postgres)
        if name:
            url = url.set(database=name)
        return url.set(drivername="postgresql").render_as_string(hide_password=False)

    async def fresh(self, dialect: str, *, migrated: bool = True) -> str:
        """The URL of a new empty database (with timeline's schema unless ``migrated`` is false)."""
        name = f"timeline_bench_{uuid.uuid4().hex[:10]}"
        if dialect == "sqlite":
            url = f"sqlite+aiosqlite:///{self.tmp / (name + '.db')}"
        else:
            admin = await asyncpg.connect(self._pg_dsn())
            try:
                await admin.execute(f'CREATE DATABASE "{name}"')
            finally:
                await admin.close()
            self.pg_names.append(name)
            url = self._pg_dsn(name)
        if migrated:
            db = Database(url)
            try:
                await migrate.upgrade(db)
            finally:
                await db.dispose()
        return url

    async def drop_all(self) -> None:
        if self.pg_names:
            admin = await asyncpg.connect(self._pg_dsn())
            try:
                for name in self.pg_names:
                    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await admin.close()


def _claim(i: int, tag: str) -> ClaimMade:
    return ClaimMade(
        claim_id=f"{tag}-{i}",
        subject_id="subject-0",
        source_id="source-0",
        statement="Some figure was given.",
        modality="asserted",
        stated_on=StatedDate(date="2024-10-21", precision="day"),
        document_ids=("bench-doc",),
        metric="soldiers",
        quantity=Quantity(comparator="about", value=i, unit="soldiers"),
    )


async def _seed(url: str, count: int) -> int:
    """Fill a timeline database with ``count`` generated events (untimed setup): the log is appended
    straight through ``eventlog.Batch`` (positions, hash chain), then the views are rebuilt from it. The
    rules are not asked, which is what makes 1,000,000 events take minutes rather than half an hour; the
    generator's events pass them (tests check this path against the write path)."""
    db = Database(url)
    try:
        versions: dict[str, int] = {}
        metadata = Metadata(recorded_by="bench", origin="seed")
        events = generate(count)
        appended = 0
        while True:
            async with db.write() as conn:
                batch = await eventlog.Batch.start(conn, dt.datetime.now(dt.UTC))
                for event in itertools.islice(events, SEED_CHUNK):
                    stream_id = stream_of(event)
                    versions[stream_id] = version = versions.get(stream_id, 0) + 1
                    batch.add(
                        stream_id,
                        version,
                        NewEvent(event=event, valid_from=valid_from(event), metadata=metadata),
                    )
                added = len(batch.rows)
                await batch.flush(conn)
            appended += added
            if added < SEED_CHUNK:
                break
        await views.rebuild_online(db)
        if db.dialect == "postgresql":
            # Statistics and the visibility map, as autovacuum would have by now on a live server (it may be
            # off here); without the map, PostgreSQL cannot answer from an index alone.
            async with db.engine.connect() as conn:
                autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
                await autocommit.execute(sa.text("VACUUM ANALYZE"))
        return appended
    finally:
        await db.dispose()


SEED_CHUNK = 50_000


# Raw and peer baselines ----------------------------------------------------------------------------------

RAW_TABLE = (
    "CREATE TABLE raw_events (position BIGINT PRIMARY KEY, stream_id TEXT NOT NULL, "
    "version INTEGER NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL, metadata TEXT NOT NULL, "
    "recorded_at TEXT NOT NULL)"
)


def _raw_rows(count: int, tag: str) -> list[tuple[Any, ...]]:
    now = dt.datetime.now(dt.UTC).isoformat()
    return [
        (
            i,
            f"claim-{tag}-{i}",
            1,
            "ClaimMade",
            encode_event(_claim(i, tag)).decode(),
            '{"recorded_by":"bench"}',
            now,
        )
        for i in range(1, count + 1)
    ]


async def _raw(
    dialect: str, url: str, rows: list[tuple[Any, ...]], per_transaction: int, copy: bool = False
) -> int:
    if dialect == "sqlite":
        path = make_url(url).database
        assert path is not None
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(RAW_TABLE.replace("BIGINT PRIMARY KEY", "INTEGER PRIMARY KEY"))
            for start in range(0, len(rows), per_transaction):
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO raw_events VALUES (?,?,?,?,?,?,?)", rows[start : start + per_transaction]
                )
                conn.execute("COMMIT")
        finally:
            conn.close()
        return len(rows)
    pg = await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await pg.execute(RAW_TABLE.replace("recorded_at TEXT", "recorded_at TIMESTAMPTZ"))
        records = [(*r[:6], dt.datetime.fromisoformat(r[6])) for r in rows]
        if copy:
            await pg.copy_records_to_table("raw_events", records=records)
        else:
            for start in range(0, len(records), per_transaction):
                async with pg.transaction():
                    await pg.executemany(
                        "INSERT INTO raw_events VALUES ($1,$2,$3,$4,$5,$6,$7)",
                        records[start : start + per_transaction],
                    )
    finally:
        await pg.close()
    return len(rows)


def _peer_recorder(dialect: str, url: str) -> Any:
    """The peer's application recorder on the same database (SQLite: a file beside ours)."""
    recorder: Any
    if dialect == "sqlite":
        path = make_url(url).database
        assert path is not None
        recorder = es_sqlite.SQLiteApplicationRecorder(es_sqlite.SQLiteDatastore(path + ".peer"))
    else:
        u = make_url(url)
        datastore = es_postgres.PostgresDatastore(
            dbname=str(u.database),
            host=str(u.host),
            port=u.port or 5432,
            user=str(u.username),
            password=u.password or "",
        )
        recorder = es_postgres.PostgresApplicationRecorder(datastore)
    recorder.create_table()
    return recorder


def _peer_events(count: int, tag: str) -> list[Any]:
    return [
        StoredEvent(
            originator_id=uuid.uuid5(uuid.NAMESPACE_OID, f"{tag}-{i}"),
            originator_version=1,
            topic="ClaimMade",
            state=encode_event(_claim(i, tag)),
        )
        for i in range(count)
    ]


def _peer_insert(recorder: Any, stored: list[Any], per_call: int) -> int:
    for start in range(0, len(stored), per_call):
        recorder.insert_events(stored[start : start + per_call])
    return len(stored)


def _peer_replay(recorder: Any) -> int:
    decoder = msgspec.json.Decoder()
    count, start = 0, 1
    while notifications := recorder.select_notifications(start=start, limit=1000):
        for n in notifications:
            decoder.decode(n.state)
        count += len(notifications)
        start = notifications[-1].id + 1
    return count


# The benchmarks --------------------------------------------------------------------------------------------


async def _timeline_writes(
    url: str, count: int, per_call: int, tag: str, signer: signing.Signer | None = None
) -> int:
    db = Database(url, signer=signer)
    try:
        async with db.write() as conn:  # the references every claim needs
            recorder = Recorder(conn, recorded_by="bench", label="setup")
            for event in list(generate(1 + 1 + 1, subjects=1, sources=1)):
                await recorder.record(event, origin="")
            await recorder.finish()
        start = time.perf_counter()
        for first in range(0, count, per_call):
            async with db.write() as conn:
                recorder = Recorder(conn, recorded_by="bench", label="bench")
                await recorder.record_all(
                    [_claim(i, tag) for i in range(first, min(first + per_call, count))], origin=""
                )
                await recorder.finish()
        return int(count / (time.perf_counter() - start))
    finally:
        await db.dispose()


async def bench_appends(dbs: Databases, dialect: str, per_call: int, count: int) -> Result:
    """Appends through the write path (rules, log, views) in calls of ``per_call`` events."""
    config = dbs.config
    ours, peer, raw = [], [], []
    for _ in range(config.repeats):
        url = await dbs.fresh(dialect)
        ours.append(float(await _timeline_writes(url, count, per_call, "t")))
        recorder = _peer_recorder(dialect, url)
        stored = _peer_events(count, "p")
        start = time.perf_counter()
        _peer_insert(recorder, stored, per_call)
        peer.append(count / (time.perf_counter() - start))
        rows = _raw_rows(count, "r")
        raw_url = await dbs.fresh(dialect, migrated=False)
        start = time.perf_counter()
        await _raw(dialect, raw_url, rows, per_call)
        raw.append(count / (time.perf_counter() - start))
    mine, theirs, floor = Stats.of(ours), Stats.of(peer), Stats.of(raw)
    if per_call == 1:
        ratio = mine.median / theirs.median
        return Result(
            benchmark="append, 1 event per call",
            database=dialect,
            unit="events/s",
            timeline=mine,
            baselines={"eventsourcing": theirs, "raw INSERT": floor},
            target=">= 1.5x eventsourcing",
            ratio=ratio,
            met=ratio >= 1.5,
        )
    ratio = mine.median / theirs.median
    raw_ratio = mine.median / floor.median
    return Result(
        benchmark="append, batches of 100",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines={"eventsourcing": theirs, "raw batched INSERT": floor},
        target=">= 1x eventsourcing and >= 0.5x raw",
        ratio=ratio,
        met=ratio >= 1 and raw_ratio >= 0.5,
        note=f"{raw_ratio:.2f}x raw",
    )


async def bench_signing(dbs: Databases, dialect: str) -> Result:
    """Single-event writes (one transaction, so one checkpoint each) with and without the signing key: the
    cost of signing a checkpoint on every commit."""
    signed, unsigned = [], []
    key = signing.Signer.generate("bench.example/log")
    for _ in range(dbs.config.repeats):
        unsigned.append(float(await _timeline_writes(await dbs.fresh(dialect), dbs.config.singles, 1, "u")))
        signed.append(
            float(await _timeline_writes(await dbs.fresh(dialect), dbs.config.singles, 1, "s", key))
        )
    mine, base = Stats.of(signed), Stats.of(unsigned)
    ratio = mine.median / base.median
    return Result(
        benchmark="append, 1 event per call, signed checkpoints",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines={"no signing key": base},
        target=">= 0.9x without signing",
        ratio=ratio,
        met=ratio >= 0.9,
        note="one Ed25519 checkpoint per transaction; the Merkle tree is kept either way",
    )


async def bench_concurrent(dbs: Databases, writers: int = 32, each: int = 10) -> Result:
    """32 writers appending single events to different claims at once (PostgreSQL), against raw batched
    INSERTs of as many events (100 a transaction) on the same database in the same run."""
    rates, single, raw = [], [], []
    for _ in range(dbs.config.repeats):
        url = await dbs.fresh("postgresql")
        single.append(float(await _timeline_writes(url, writers * each // 4, 1, "s")))
        rows = _raw_rows(writers * each * 4, "c")
        start = time.perf_counter()
        raw.append(await _raw("postgresql", url, rows, 100) / (time.perf_counter() - start))
        db = Database(url, pool_size=writers)
        committer = Committer(db)

        def write_one(w: int, i: int) -> Callable[[Recorder], Awaitable[int]]:
            async def unit(recorder: Recorder) -> int:
                recorder.act_as(recorded_by="bench", label="bench")
                await recorder.record(_claim(i, f"w{w}"), origin="")
                return 1

            return unit

        async def writer(w: int, committer: Committer = committer) -> None:
            for i in range(each):
                # As app.commands.record does: the stream and the streams it names are read for the
                # whole batch in one query.
                event = _claim(i, f"w{w}")
                await committer.run(write_one(w, i), reads=[stream_of(event)], probes=references(event))

        try:
            start = time.perf_counter()
            await asyncio.gather(*(writer(w) for w in range(writers)))
            rates.append(writers * each / (time.perf_counter() - start))
        finally:
            await committer.close()
            await db.dispose()
    mine, base, batched = Stats.of(rates), Stats.of(single), Stats.of(raw)
    ratio = mine.median / batched.median
    return Result(
        benchmark=f"append, {writers} concurrent writers",
        database="postgresql",
        unit="events/s",
        timeline=mine,
        baselines={"raw batched INSERT": batched, "1 writer": base},
        target=">= 0.25x raw batched INSERT",
        ratio=ratio,
        met=ratio >= 0.25,
        note=f"group commit: writes share one transaction; {mine.median / base.median:.1f}x one writer",
    )


def _fixture_text(count: int) -> bytes:
    """A fixture file with ``count`` entries (claims, revisions, denials...)."""
    entries: list[dict[str, Any]] = []
    subjects = [{"id": f"subject-{s}", "name": f"Subject {s}"} for s in range(50)]
    sources = [{"id": f"source-{s}", "name": f"Source {s}", "kind": "agency"} for s in range(50)]
    made: list[tuple[str, str]] = []
    for i in range(count):
        if i % 3 or not made:
            source = sources[i % 50]["id"]
            entries.append(
                {
                    "type": "claim",
                    "id": f"c{i}",
                    "subject": subjects[i % 50]["id"],
                    "source": source,
                    "statement": "A figure.",
                    "metric": "soldiers",
                    "quantity": {"comparator": "about", "value": i, "unit": "soldiers"},
                }
            )
            made.append((f"c{i}", source))
        else:
            claim, source = made[i % len(made)]
            other = sources[(int(source.split("-")[1]) + 1) % 50]["id"]
            entries.append(
                {"type": "denial", "id": f"d{i}", "source": other, "claims": [claim], "statement": "No."}
            )
    fixture = {
        "document": {"id": "bench", "title": "Bench", "published_on": "2024-10-21"},
        "subjects": subjects,
        "sources": sources,
        "events": entries,
    }
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return yaml.dump(fixture, Dumper=dumper, sort_keys=False).encode()


async def bench_import(dbs: Databases, dialect: str) -> Result:
    """Importing one big fixture file, against loading the same number of rows raw."""
    count = dbs.config.imports
    text = _fixture_text(count)
    ours, raw = [], []
    for _ in range(dbs.config.repeats):
        url = await dbs.fresh(dialect)
        db = Database(url)
        try:
            start = time.perf_counter()
            [result] = await import_fixtures(db, [LoadedFixture("bench.yaml", text)], recorded_by="bench")
            ours.append(result.appended / (time.perf_counter() - start))
        finally:
            await db.dispose()
        raw_url = await dbs.fresh(dialect, migrated=False)
        rows = _raw_rows(result.appended, "r")
        start = time.perf_counter()
        await _raw(dialect, raw_url, rows, 1000, copy=dialect == "postgresql")
        raw.append(len(rows) / (time.perf_counter() - start))
    mine, floor = Stats.of(ours), Stats.of(raw)
    ratio = mine.median / floor.median
    name = "raw COPY" if dialect == "postgresql" else "raw batched INSERT"
    return Result(
        benchmark=f"import a fixture of {count:,} events",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines={name: floor},
        target=f">= 0.5x {name}",
        ratio=ratio,
        met=ratio >= 0.5,
        note="includes parsing the YAML, the rules, the hash chain and the views",
    )


def _rss_of_rebuild(url: str) -> float:
    """Peak RSS (MB) of `timeline rebuild` as its own process."""
    return peak_rss_mb("timeline", ["--database-url", url, "rebuild"])


# Runs a module as ``python -m`` would, then reports the process's own peak RSS: the kernel's high-water mark
# of its memory since exec (VmHWM). Peak RSS from getrusage would not do: for children it is the largest of
# every child waited for so far (servers included), and even a single child's counts the parent's memory it
# shared between fork and exec.
_PEAK_OF_MODULE = """
import runpy, sys
module, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_module(module, run_name="__main__", alter_sys=True)
except SystemExit as exit:
    code = exit.code
else:
    code = 0
with open("/proc/self/status") as status:
    peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(f"peak-rss-kb {peak}", file=sys.stderr)
sys.exit(code)
"""


def peak_rss_mb(module: str, args: list[str]) -> float:
    """Run ``python -m module args`` to completion (raising if it fails) and return its own peak RSS (MB)."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_OF_MODULE, module, *args], capture_output=True, text=True, check=True
    )
    reported = [line for line in done.stderr.splitlines() if line.startswith("peak-rss-kb ")]
    return int(reported[-1].split()[1]) / 1024


async def bench_rebuild(dbs: Databases, dialect: str, url: str, count: int) -> Result:
    """Refolding every view from the log, against the peer reading back (and decoding) the same events."""
    ours, peer = [], []
    recorder = _peer_recorder(dialect, url)
    _peer_insert(recorder, _peer_events(count, "replay"), 1000)
    for _ in range(dbs.config.repeats):
        db = Database(url)
        try:
            start = time.perf_counter()
            replayed = await views.rebuild_online(db)
            ours.append(replayed / (time.perf_counter() - start))
        finally:
            await db.dispose()
        start = time.perf_counter()
        peer.append(_peer_replay(recorder) / (time.perf_counter() - start))
    rss = _rss_of_rebuild(url)
    mine, theirs = Stats.of(ours), Stats.of(peer)
    ratio = mine.median / theirs.median
    return Result(
        benchmark=f"rebuild all views from {count:,} events",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines={"eventsourcing replay": theirs},
        target=">= 4x eventsourcing replay",
        ratio=ratio,
        met=ratio >= 4,
        note=f"peak RSS of `timeline rebuild` {rss:.0f} MB",
    )


async def bench_archive(dbs: Databases, dialect: str, url: str) -> list[Result]:
    """Export the log (streamed) and restore it into an empty database."""
    exports, restores = [], []
    for _ in range(dbs.config.repeats):
        db = Database(url)
        try:
            start = time.perf_counter()
            lines: list[bytes] = []
            async with db.read() as conn:
                async for line in backup.export(conn):
                    lines.append(line)
            exports.append(len(lines) / (time.perf_counter() - start))
        finally:
            await db.dispose()
        target = Database(await dbs.fresh(dialect))
        try:
            start = time.perf_counter()
            async with target.write() as conn:
                count = await backup.restore(conn, lines)
            restores.append(count / (time.perf_counter() - start))
        finally:
            await target.dispose()
    exported = Stats.of(exports)
    return [
        Result(
            benchmark="export the log",
            database=dialect,
            unit="events/s",
            timeline=exported,
            baselines={},
            target=">= 100,000 events/s",
            ratio=exported.median / 100_000,
            met=exported.median >= 100_000,
        ),
        Result(
            benchmark="restore an export (chain checked)",
            database=dialect,
            unit="events/s",
            timeline=Stats.of(restores),
            baselines={},
            target="-",
            ratio=None,
            met=None,
        ),
    ]


# HTTP ----------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Server:
    def __init__(self, url: str, **env: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "timeline",
                "--database-url",
                url,
                "serve",
                "--no-fixtures",
                "--port",
                str(self.port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TIMELINE_PROJECTION_BATCH": "2000", **env},
        )

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{self.base}/ping")).status_code == 200:
                        return
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Load(msgspec.Struct, frozen=True):
    """What wrk measured: requests/s, latency percentiles (ms) and failed requests."""

    rate: float
    p50: float
    p99: float
    errors: int

    @property
    def note(self) -> str:
        return f"p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms, {self.errors} errors"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str) -> float:
    number = text.rstrip("usm")
    return float(number) * _UNITS[text[len(number) :]]


def parse_wrk(output: str) -> Load:
    """Requests/s, p50, p99 and errors (non-2xx/3xx answers and socket errors) from ``wrk --latency``."""
    rate, p50, p99, errors = 0.0, 0.0, 0.0, 0
    for line in output.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            rate = float(words[1])
        elif words[:1] == ["50%"]:
            p50 = _wrk_ms(words[1])
        elif words[:1] == ["99%"]:
            p99 = _wrk_ms(words[1])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            errors += int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            errors += sum(int(w.strip(",")) for w in words[2:] if w.strip(",").isdigit())
    return Load(rate, p50, p99, errors)


def _wrk(base: str, path: str, connections: int, seconds: float, script: str | None = None) -> Load:
    """Load ``base + path`` with wrk (a native generator, so the client costs little of the CPU)."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script is not None:
            lua.write(script)
            lua.flush()
            command += ["-s", lua.name]
        done = subprocess.run([*command, base + path], capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def _distinct(path: str, parameter: str, values: list[str]) -> str:
    """A wrk script asking for ``path`` with a different ``parameter`` each request (so none is cached)."""
    listed = ", ".join(f'"{v}"' for v in values)
    return (
        f"local values = {{{listed}}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n"
        f'  return wrk.format(nil, "{path}{parameter}=" .. values[(n % #values) + 1])\nend\n'
    )


def _revisions(token: str, claims: int) -> str:
    """A wrk script POSTing revisions, each with its own id, round-robin over ``claims`` claims."""
    body = json.dumps(
        {
            "statement": "new",
            "stated_on": "2024-10-25",
            "document_ids": ["bench-doc"],
            "revision_id": f"http-{uuid.uuid4().hex[:8]}-%d",
        }
    )
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f"local template = [[{body}]]\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        f'  local path = "/claims/c" .. (n % {claims}) .. "/revisions"\n'
        "  return wrk.format(nil, path, nil, string.format(template, n))\n"
        "end\n"
    )


async def _subject_events(url: str, subject_id: str) -> int:
    db = Database(url)
    try:
        async with db.read() as conn:
            result = await conn.execute(
                sa.select(sa.func.count())
                .select_from(schema.timeline)
                .where(schema.timeline.c.subject_id == subject_id)
            )
            return int(result.scalar_one())
    finally:
        await db.dispose()


READ_ROUTES = {
    "timeline page of 50": "/subjects/subject-0/timeline?limit=50",
    "estimates view": "/subjects/subject-0/estimates",
    "claim history": "/claims/c1/history",
}


async def bench_http(dbs: Databases, dialect: str, url: str, token: str) -> list[Result]:
    """Reads against the app's constant route (with and without the response cache), time travel to
    distinct moments, and on PostgreSQL concurrent writes; all under wrk."""
    config = dbs.config
    connections, seconds = config.connections, config.http_seconds
    results = []
    uncached: dict[str, Load] = {}
    # Without the response cache: the reads' own baseline, and time travel, which must be computed each time.
    server = _Server(url, TIMELINE_RESPONSE_CACHE_BYTES="0")
    try:
        await server.ready()
        for name, path in READ_ROUTES.items():
            uncached[name] = await asyncio.to_thread(_wrk, server.base, path, connections, seconds)
        events = await _subject_events(url, "subject-0")
        head = config.events
        cuts = {
            "estimates as_of a date": (
                "/subjects/subject-0/estimates?",
                "as_of",
                [f"2024-{m:02}-{d:02}" for m in range(1, 13) for d in range(1, 29)],
            ),
            "estimates known_at a position": (
                "/subjects/subject-0/estimates?",
                "known_at",
                [str(p) for p in range(head, head // 2, -max(1, head // 2000))],
            ),
        }
        for name, (path, parameter, values) in cuts.items():
            script = _distinct(path, parameter, values)
            load = await asyncio.to_thread(_wrk, server.base, path, 1, seconds, script)
            results.append(
                Result(
                    benchmark=f"HTTP {name}",
                    database=dialect,
                    unit="requests/s",
                    timeline=Stats(load.rate, load.rate, load.rate),
                    baselines={},
                    target="p50 < 50 ms (subject of 10,000 events)",
                    ratio=None,
                    # The target is for a subject of 10,000 events; a smaller run's subject proves nothing.
                    met=load.p50 < 50 and load.errors == 0 if events >= 10_000 else None,
                    note=f"{load.note}; one connection, a different moment each request, no response cache, "
                    f"subject of {events:,} timeline entries"
                    + ("" if events >= 10_000 else " (too few to judge; `--full` has 10,000)"),
                )
            )
    finally:
        server.stop()
    server = _Server(url)
    try:
        await server.ready()
        ceiling = await asyncio.to_thread(_wrk, server.base, "/ping", connections, seconds)
        constant = {"constant route": Stats(ceiling.rate, ceiling.rate, ceiling.rate)}
        for name, path in READ_ROUTES.items():
            async with httpx.AsyncClient() as client:  # fill the cache: steady state is measured
                await client.get(server.base + path)
            load = await asyncio.to_thread(_wrk, server.base, path, connections, seconds)
            ratio = load.rate / ceiling.rate
            results.append(
                Result(
                    benchmark=f"HTTP {name}",
                    database=dialect,
                    unit="requests/s",
                    timeline=Stats(load.rate, load.rate, load.rate),
                    baselines=constant,
                    target=">= 0.5x constant route, p99 < 25 ms",
                    ratio=ratio,
                    met=ratio >= 0.5 and load.p99 < 25 and load.errors == 0,
                    note=f"{load.note}, {connections} connections; constant route p99 {ceiling.p99:.1f} ms; "
                    f"without the response cache {uncached[name].rate:,.0f} requests/s "
                    f"(p99 {uncached[name].p99:.1f} ms)",
                )
            )
        if dialect == "postgresql":
            # Writers revise claims all over the log (as editors do), not 32 claims hundreds of times each:
            # a revision reads its claim's whole stream to check the rules.
            claims = max(32, config.events // 3)
            script = _revisions(token, claims)
            load = await asyncio.to_thread(_wrk, server.base, "/", connections, seconds, script)
            results.append(
                Result(
                    benchmark="HTTP writes (POST a revision)",
                    database=dialect,
                    unit="events/s",
                    timeline=Stats(load.rate, load.rate, load.rate),
                    baselines={},
                    target=">= 2,000 events/s, no errors",
                    ratio=load.rate / 2000,
                    met=load.rate >= 2000 and load.errors == 0,
                    note=f"{load.note}, {connections} connections, round-robin over {claims:,} claims",
                )
            )
    finally:
        server.stop()
    return results


async def _token(url: str) -> str:
    db = Database(url)
    try:
        async with db.write() as conn:
            return await tokens.create(conn, f"bench-{uuid.uuid4().hex[:6]}", ("write",))
    finally:
        await db.dispose()


# "live" is run by timeline_bench.live (it builds on this module).
def _travel_result(dialect: str, cuts: Cuts) -> Result:
    p50 = statistics.median(cuts.ms)
    return Result(
        benchmark=f"time travel, {cuts.kind} on a subject of {cuts.size:,} events",
        database=dialect,
        unit="ms",
        timeline=Stats.of(cuts.ms),
        baselines={"folded from the log alone": Stats.of(cuts.log_only)},
        target="p50 < 50 ms",
        ratio=None,
        met=p50 < 50,
        note=f"log of {cuts.head:,} events, {len(cuts.ms)} cuts, in process, from snapshots "
        f"(the projector kept them for every subject in {cuts.catch_up:.0f} s first)",
    )


GROUPS = ("appends", "import", "rebuild", "timetravel", "archive", "http", "live")


async def run(
    config: Config, dialects: list[str], log: Callable[[str], None], only: tuple[str, ...] = GROUPS
) -> list[Result]:
    """Every benchmark (of the ``only`` groups) on every database."""
    dbs = Databases(config)
    results: list[Result] = []
    try:
        for dialect in dialects:
            if "appends" in only:
                log(f"{dialect}: appends")
                results.append(await bench_appends(dbs, dialect, 1, config.singles))
                results.append(await bench_appends(dbs, dialect, 100, config.batches * 100))
                log(f"{dialect}: signing checkpoints")
                results.append(await bench_signing(dbs, dialect))
                if dialect == "postgresql":
                    log(f"{dialect}: concurrent appends")
                    results.append(await bench_concurrent(dbs))
            if "import" in only:
                log(f"{dialect}: import")
                results.append(await bench_import(dbs, dialect))
            if not {"rebuild", "timetravel", "archive", "http"} & set(only):
                continue
            log(f"{dialect}: building a log of {config.events:,} events")
            url = await dbs.fresh(dialect)
            count = await _seed(url, config.events)
            if "rebuild" in only:
                log(f"{dialect}: rebuild")
                results.append(await bench_rebuild(dbs, dialect, url, count))
            if "timetravel" in only:
                log(f"{dialect}: time travel")
                results.extend(_travel_result(dialect, cuts) for cuts in await time_cuts(url))
            if "archive" in only:
                log(f"{dialect}: export and restore")
                results.extend(await bench_archive(dbs, dialect, url))
            if "http" in only:
                log(f"{dialect}: HTTP")
                results.extend(await bench_http(dbs, dialect, url, await _token(url)))
    finally:
        await dbs.drop_all()
    return results
