"""Real server processes on one database: live events cross processes (PostgreSQL and SQLite), a killed
process loses nothing, the asynchronous projection's leadership moves on when its leader dies, and a revoked
token ends the streams it opened on every process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa

from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain.events import ClaimConfirmed, ClaimDenied, StatedDate
from timeline.service import Recorder
from timeline.store import activity, projector
from timeline.store.database import Database
from timeline.store.schema import source_activity

from .conftest import SEED

NIS = "nis-1500-soldiers-sent-for-training"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _seed_only(tmp: Path) -> Path:
    """A fixtures directory holding the seed fixture alone."""
    directory = tmp / "seed-fixtures"
    directory.mkdir(exist_ok=True)
    (directory / SEED.name).write_bytes(SEED.read_bytes())
    return directory


class Server:
    """One `timeline serve` process."""

    def __init__(
        self, url: str, log: Path, *, fixtures: Path | None = None, args: tuple[str, ...] = (), **env: str
    ) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        # Served with the seed fixture alone unless told: what these tests count and show stays the seed's 29
        # events, whatever fixtures the project gains.
        seed_only = fixtures or _seed_only(log.parent)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "timeline",
                "--database-url",
                url,
                "serve",
                "--port",
                str(self.port),
                "--fixtures",
                str(seed_only),
                *args,
            ],
            env={**os.environ, "TIMELINE_KEEPALIVE_SECONDS": "0.3", **env},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self) -> None:
        # A readiness wait, not a timing assertion: on a loaded machine importing the CLI alone takes seconds.
        deadline = time.monotonic() + 90
        async with httpx.AsyncClient() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.base}/health")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise TimeoutError(f"server on {self.port} did not start; see {self.log.name}")

    async def health(self) -> dict[str, Any]:
        async with httpx.AsyncClient() as client:
            return dict((await client.get(f"{self.base}/health")).json())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@contextlib.contextmanager
def servers(
    url: str, tmp: Path, count: int, args: tuple[str, ...] = (), **env: str
) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for i in range(count):
            started.append(Server(url, tmp / f"server{i}.log", args=args, **env))
        yield started
    finally:
        for server in started:
            server.stop()


class Listener:
    """Reads an event stream in the background, collecting (id, type) pairs."""

    def __init__(self, url: str, last_event_id: int, token: str | None = None) -> None:
        self.events: list[tuple[int, str]] = []
        self.headers = httpx.Headers()
        self.task = asyncio.create_task(self._read(url, last_event_id, token))

    async def _read(self, url: str, last_event_id: int, token: str | None) -> None:
        headers = {
            "Accept": "text/event-stream",
            "Last-Event-ID": str(last_event_id),
            "Accept-Encoding": "br, gzip",
        }
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as client,
            client.stream("GET", url, headers=headers) as response,
        ):
            self.headers = response.headers
            current: int | None = None
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    current = int(line[4:])
                elif line.startswith("event: ") and current is not None:
                    self.events.append((current, line[7:]))
                    current = None

    async def until(self, count: int, seconds: float = 15) -> list[tuple[int, str]]:
        for _ in range(int(seconds * 20)):
            if len(self.events) >= count or self.task.done():
                break
            await asyncio.sleep(0.05)
        return self.events

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await self.task


async def _cli(url: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "timeline",
        "--database-url",
        url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0, args
    return out.decode().strip()


async def _token(url: str) -> str:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    command = [
        sys.executable,
        "-m",
        "timeline",
        "--database-url",
        url,
        "tokens",
        "create",
        name,
        "--scope",
        "write",
    ]
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode().strip()


async def _revise(base: str, token: str, n: int) -> int:
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{base}/claims/{NIS}/revisions",
            headers={"Authorization": f"Bearer {token}"},
            json={
                "statement": f"update {n}",
                "stated_on": "2024-10-25",
                "document_ids": ["000-16630df2654ec508"],
                "revision_id": f"e2e-{n}",
            },
        )
        assert response.status_code == 201, response.text
        return int(response.json()["events"][0]["position"])


async def test_a_write_through_one_process_reaches_the_stream_of_another(pg_url: str, tmp_path: Path) -> None:
    with servers(pg_url, tmp_path, 2) as (a, b):
        await a.ready()  # a seeds the empty database with the fixtures
        await b.ready()
        token = await _token(pg_url)
        on_a = Listener(f"{a.base}/events/stream", 29)
        on_b = Listener(f"{b.base}/events/stream?claim={NIS}", 29)
        await asyncio.sleep(0.5)
        written = [await _revise(b.base if n % 2 else a.base, token, n) for n in range(6)]
        assert written == list(range(30, 36))
        assert [p for p, _ in await on_a.until(6)] == written
        assert {t for _, t in on_a.events} == {"ClaimRevised"}
        assert [p for p, _ in await on_b.until(6)] == written
        await on_a.close()
        await on_b.close()
        async with httpx.AsyncClient() as client:
            claim = (await client.get(f"{a.base}/claims/{NIS}")).json()
        assert claim["version"] == 8
        assert claim["statement"] == "update 5"


async def test_killing_the_streaming_process_loses_nothing(pg_url: str, tmp_path: Path) -> None:
    with servers(pg_url, tmp_path, 2) as (a, b):
        await a.ready()
        await b.ready()
        token = await _token(pg_url)
        on_a = Listener(f"{a.base}/events/stream", 29)
        await asyncio.sleep(0.5)
        first = [await _revise(b.base, token, n) for n in range(3)]
        seen = await on_a.until(3)
        assert [p for p, _ in seen] == first
        a.kill()  # SIGKILL mid-stream
        await on_a.close()
        later = [await _revise(b.base, token, n) for n in range(3, 6)]
        resumed = Listener(f"{b.base}/events/stream", seen[-1][0])
        got = await resumed.until(3)
        await resumed.close()
        assert [p for p, _ in got] == later  # no gap, no duplicate


async def _bulk(url: str, count: int, tag: str = "k") -> int:
    db = Database(url)
    try:
        await import_fixtures(db, [LoadedFixture("seed", SEED.read_bytes())], recorded_by="test")
        async with db.write() as conn:
            recorder = Recorder(conn, recorded_by="test", label="bulk")
            day = StatedDate(date="2024-10-25", precision="day")
            for i in range(count):
                kind = ClaimConfirmed if i % 2 else ClaimDenied
                fields = (
                    {"confirmation_id": f"{tag}{i}", "confirmed_by": "france"}
                    if i % 2
                    else {"denial_id": f"{tag}{i}", "denied_by": "kremlin"}
                )
                await recorder.record(
                    kind(
                        claim_id=NIS,
                        statement="s",
                        stated_on=day,
                        document_ids=("000-16630df2654ec508",),
                        **fields,
                    ),  # type: ignore[arg-type]
                    origin="",
                )
            await recorder.finish()
        async with db.read() as conn:
            return int((await conn.execute(sa.text("SELECT max(position) FROM events"))).scalar_one())
    finally:
        await db.dispose()


async def _activity_rows(url: str) -> list[tuple[Any, ...]]:
    db = Database(url)
    try:
        async with db.read() as conn:
            rows = await conn.execute(sa.select(source_activity).order_by(source_activity.c.source_id))
            return [tuple(r) for r in rows]
    finally:
        await db.dispose()


async def _rebuilt_activity(url: str) -> list[tuple[Any, ...]]:
    """The sources' activity rows after a rebuild from the log."""
    db = Database(url)
    try:
        async with db.write() as conn:
            await projector.reset(conn, activity)
        await projector.catch_up(db, activity)
    finally:
        await db.dispose()
    return await _activity_rows(url)


async def test_projection_leadership_moves_when_the_leader_dies(pg_url: str, tmp_path: Path) -> None:
    head = await _bulk(pg_url, 400)
    # The API processes lead here (a projection process of their own would outlive a killed server briefly).
    with servers(pg_url, tmp_path, 2, TIMELINE_PROJECTION_BATCH="1", TIMELINE_PROJECTIONS="inline") as (a, b):
        await a.ready()
        for _ in range(200):
            if 0 < (await a.health())["projections"]["source_activity"] < head:
                break
            await asyncio.sleep(0.02)
        await b.ready()
        reached = (await b.health())["projections"]["source_activity"]
        assert reached < head, "the leader finished before it could be killed; the test proves nothing"
        a.kill()  # the leader dies mid catch-up
        for _ in range(400):
            if (await b.health())["projections"]["source_activity"] == head:
                break
            await asyncio.sleep(0.05)
        assert (await b.health())["projections"]["source_activity"] == head
    caught_up = await _activity_rows(pg_url)
    assert await _rebuilt_activity(pg_url) == caught_up  # as a rebuild: nothing applied twice or skipped
    counts = {row[0]: row[1:5] for row in caught_up}
    assert counts["kremlin"] == (0, 5 + 200, 0, 0)
    assert counts["france"] == (1, 0, 200, 0)


def _children(parent: int) -> dict[int, list[bytes]]:
    """The child processes of ``parent``: pid and argv."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent:
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().split(b"\0")
    return found


def _projection_process(server: Server) -> int:
    """The pid of the `timeline project` process a server started (waiting for it to appear)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid, argv in _children(server.proc.pid).items():
            if b"project" in argv:
                return pid
        time.sleep(0.1)
    raise TimeoutError(f"no projection process; see {server.log.name}")


def _command_line(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


def _gone(pid: int, seconds: float = 20) -> bool:
    """Whether process ``pid`` has ended (a zombie counts: it ran its last) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.1)
    return False


async def _leads(url: str) -> list[int]:
    """The pid of the process holding each projection's lead (from its session's application_name)."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
            "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'timeline lead %' "
            # Advisory locks are the cluster's: another run's databases have projection leads too.
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        )
    finally:
        await conn.close()
    return sorted(int(row[0].rsplit(" ", 1)[1]) for row in rows)


async def _caught_up(server: Server, head: int, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        positions = (await server.health())["projections"]
        if positions.get("source_activity") == head:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_serve_on_postgresql_keeps_the_projections_in_a_process_of_their_own(
    pg_url: str, tmp_path: Path
) -> None:
    head = await _bulk(pg_url, 100)
    with servers(pg_url, tmp_path, 1) as (a,):
        await a.ready()
        child = _projection_process(a)
        # The URL (and any password in it) reaches it through the environment, not where `ps` shows it.
        assert pg_url.encode() not in _command_line(child)
        assert await _caught_up(a, head)
        assert await _leads(pg_url) == [child, child]
        # The API process defers to the projection process: it takes the lead once that process is gone.
        os.kill(child, signal.SIGKILL)
        head = await _bulk(pg_url, 100, tag="after")
        assert await _caught_up(a, head)
        assert await _leads(pg_url) == [a.proc.pid, a.proc.pid]
    caught_up = await _activity_rows(pg_url)
    assert await _rebuilt_activity(pg_url) == caught_up  # nothing applied twice or skipped at the handover


async def test_serve_with_two_workers_keeps_one_projection_process_and_every_concurrent_write(
    pg_url: str, tmp_path: Path
) -> None:
    # What an operator runs on PostgreSQL to use more than one core: two API processes writing in turn and
    # one projection process, which alone holds the projections' lead. Concurrent writes through them all
    # land once each, the signed log verifies, the projections catch up, and stopping serve ends them all.
    with servers(pg_url, tmp_path, 1, args=("--workers", "2")) as (a,):
        await a.ready()
        token = await _token(pg_url)
        child = _projection_process(a)
        # uvicorn spawns its workers through multiprocessing (beside its resource tracker).
        workers = [pid for pid, argv in _children(a.proc.pid).items() if b"spawn_main" in b" ".join(argv)]
        assert len(workers) == 2
        assert not any(_children(pid) for pid in workers)  # no projection process of their own
        written = await asyncio.gather(*(_revise(a.base, token, n) for n in range(60)))
        assert sorted(written) == list(range(30, 90))
        assert await _caught_up(a, 89)
        assert await _leads(pg_url) == [child, child]
        # Each worker's batches signed over the other's: the whole log is covered, every signature checked.
        verified = (await _cli(pg_url, "verify")).splitlines()
        assert verified[0].startswith("ok: 89 events checked, whole chain")
        assert verified[1].endswith("signed checkpoints, their roots recomputed and signatures")
        assert len(verified) == 2  # nothing UNSIGNED
        async with httpx.AsyncClient() as client:
            claim = (await client.get(f"{a.base}/claims/{NIS}")).json()
        assert claim["version"] == 62
    assert all(_gone(pid) for pid in (child, *workers))


@pytest.mark.parametrize("ending", ["terminated", "killed"])
async def test_the_projection_process_ends_with_serve(pg_url: str, tmp_path: Path, ending: str) -> None:
    with servers(pg_url, tmp_path, 1) as (a,):
        await a.ready()
        child = _projection_process(a)
        if ending == "killed":
            a.kill()  # it cannot say so: the projection process notices its parent is gone
        else:
            a.stop()
        assert _gone(child)


async def test_serve_inline_keeps_the_projections_in_the_api_process(pg_url: str, tmp_path: Path) -> None:
    head = await _bulk(pg_url, 20)
    with servers(pg_url, tmp_path, 1, TIMELINE_PROJECTIONS="inline") as (a,):
        await a.ready()
        assert await _caught_up(a, head)
        assert await _leads(pg_url) == [a.proc.pid, a.proc.pid]


async def test_one_sqlite_server_streams_its_own_writes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'one.db'}"
    with servers(url, tmp_path, 1) as (a,):
        await a.ready()
        token = await _token(url)
        listener = Listener(f"{a.base}/events/stream?source=south-korea-nis", 0)
        await asyncio.sleep(0.3)
        written = await _revise(a.base, token, 1)
        events = await listener.until(4)
        await listener.close()
        assert [p for p, _ in events] == [4, 13, 23, written]


async def test_sqlite_servers_stream_each_others_writes_and_end_the_streams_of_a_revoked_token(
    tmp_path: Path,
) -> None:
    """SQLite has no notifications between processes: a stream must still see another process's write
    promptly (well before the keep-alive), and with public reads off, a revoked token's stream ends."""
    await _streams_across_servers_end_on_revocation(f"sqlite+aiosqlite:///{tmp_path / 'two.db'}", tmp_path)


async def test_postgresql_servers_end_the_streams_of_a_revoked_token_too(pg_url: str, tmp_path: Path) -> None:
    await _streams_across_servers_end_on_revocation(pg_url, tmp_path)


async def _streams_across_servers_end_on_revocation(url: str, tmp_path: Path) -> None:
    """With public reads off, a stream on one server sees a write made through another promptly, and ends
    once its read token is revoked."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    env = {"TIMELINE_PUBLIC_READS": "false", "TIMELINE_KEEPALIVE_SECONDS": "60"}
    with servers(url, tmp_path / "a", 1, **env) as (a,):
        await a.ready()  # a migrates and seeds; b starts on the ready database
        with servers(url, tmp_path / "b", 1, **env) as (b,):
            await b.ready()
            writer = await _token(url)
            reader = await _cli(url, "tokens", "create", "stream-reader", "--scope", "read")
            on_a = Listener(f"{a.base}/events/stream", 29, token=reader)
            await asyncio.sleep(0.5)
            written = await _revise(b.base, writer, 1)
            assert [p for p, _ in await on_a.until(1, seconds=2)] == [written]
            # Sent as encoded once for every stream, not compressed again for each.
            assert "content-encoding" not in on_a.headers
            await _cli(url, "tokens", "revoke", "stream-reader")
            async with asyncio.timeout(10):
                await on_a.task  # the server ended the stream
            await on_a.close()
