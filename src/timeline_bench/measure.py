"""What the benchmarks share: rates measured several times, the table's rows, fresh databases and
the peak memory of a command.

Each benchmark measures a rate (events/s or requests/s) several times and keeps median, min and max; the
target is a ratio to a baseline measured in the same run, so it holds on a noisy machine.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import msgspec
from sqlalchemy.engine import make_url

from timeline.store import migrate
from timeline.store.database import Database


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


# CPU time -------------------------------------------------------------------------------------------------


def _stat(text: str) -> tuple[str, list[str]]:
    """A /proc/PID/stat line as the command's name and the fields after it (state first)."""
    name, _, rest = text.partition("(")[2].rpartition(")")
    return name, rest.split()


def _seconds(ticks: list[str]) -> float:
    return sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The CPU time a process has used (user + system), from /proc."""
    return _seconds(_stat(Path(f"/proc/{pid}/stat").read_text())[1][11:13])


def _processes() -> Iterator[tuple[Path, str, list[str]]]:
    """Every running process's /proc directory, command name and stat fields (state first)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # it ended meanwhile
            continue
        yield stat.parent, *_stat(text)


def offspring_cpu_seconds(pid: int, *, projections: bool = True) -> float:
    """The CPU time the running children of process ``pid`` have used: its `timeline project` process
    (``projections``), or every other child (the API processes of ``serve --workers N``)."""
    used = 0.0
    for directory, _name, fields in _processes():
        if int(fields[1]) != pid:
            continue
        try:
            # `timeline project --parent N ...`, as serve starts it (timeline.cli.projecting).
            projecting = b"\0project\0" in (directory / "cmdline").read_bytes()
        except OSError:  # it ended meanwhile
            continue
        if projecting == projections:
            used += _seconds(fields[11:13])
    return used


def _postgres_scan() -> dict[str, float]:
    """Each PostgreSQL process's CPU time with that of its children it reaped (utime, stime, cutime,
    cstime), by process id."""
    return {d.name: _seconds(fields[11:15]) for d, name, fields in _processes() if name == "postgres"}


# Scans ``postgres_cpu_seconds`` makes at most while processes keep ending or starting under it.
_SCANS = 10


def postgres_cpu_seconds() -> float | None:
    """The CPU time PostgreSQL on this machine has used (its backends, WAL writer, checkpointer, and those
    that ended, which the postmaster reaped and counts as its children's), or None when none runs here."""
    # A backend that ends moves into its parent's count when reaped; but one reaped while /proc is read, after
    # the parent's entry and before its own, is in neither, and the sum went back (-30 ms in one reading,
    # bench/results-2026-12-05-sixteenth-rebuild-parts.txt). A scan is kept once the one before it found the
    # same processes, so that none of them ended or was reaped during it.
    scan = _postgres_scan()
    for _ in range(_SCANS):
        last, scan = scan, _postgres_scan()
        if scan.keys() == last.keys():
            break
    return sum(scan.values()) if scan else None


def children_cpu_seconds() -> float:
    """The CPU time this process's ended and waited-for children have used (a load generator run to its
    end, say)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


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
