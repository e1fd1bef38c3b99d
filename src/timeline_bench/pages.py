"""``python -m timeline_bench.pages [--writes N] [--signed]``: what one single-event write costs SQLite at its
commit, counted rather than timed. The WAL receives every page a commit changed, once, so its frames between
two commit marks are that commit's pages; each frame's page number names the b-tree (table or index) it
belongs to (the ``dbstat`` table). Statements are counted with sqlite3's trace callback."""

from __future__ import annotations

import argparse
import asyncio
import collections
import sqlite3
import struct
import tempfile
from pathlib import Path
from typing import Any

from timeline import signing
from timeline.store import migrate
from timeline.store.database import Database
from timeline_bench.appends import timeline_writes

_WAL_HEADER, _FRAME_HEADER = 32, 24


def wal_commits(wal: Path) -> list[list[int]]:
    """The page numbers each commit in the WAL wrote, in order."""
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    commits: list[list[int]] = []
    pages: list[int] = []
    offset = _WAL_HEADER
    while offset + _FRAME_HEADER + page_size <= len(data):
        page, size_after_commit = struct.unpack(">II", data[offset : offset + 8])
        pages.append(page)
        if size_after_commit:  # the commit's last frame
            commits.append(pages)
            pages = []
        offset += _FRAME_HEADER + page_size
    return commits


async def count(
    folder: Path, writes: int, signed: bool
) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """Pages per commit by b-tree, and statements per write transaction by their first words, over
    ``writes`` one-event writes made after as many to warm the b-trees up."""
    statements: list[str] = []
    connect = sqlite3.connect  # store.inline opens its connections through it

    def traced(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # the WAL keeps every commit's frames
        conn.set_trace_callback(statements.append)
        return conn

    path = folder / "pages.db"
    url = f"sqlite:///{path}"
    signer = signing.Signer.generate("bench.example/log") if signed else None
    db = Database(url)
    await migrate.upgrade(db)
    await db.dispose()
    setattr(sqlite3, "connect", traced)  # noqa: B010 (mypy refuses assigning to a module's function)
    try:
        await timeline_writes(url, writes, 1, "w", signer)
        keep = connect(path)  # open until the end, so the WAL is not checkpointed away on close
        keep.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        statements.clear()
        await timeline_writes(url, writes, 1, "t", signer)
    finally:
        setattr(sqlite3, "connect", connect)  # noqa: B010
    commits = wal_commits(Path(f"{path}-wal"))[1:]  # the first commit is the setup's (the references)
    owner = {int(page): str(name) for name, page in keep.execute("SELECT name, pageno FROM dbstat")}
    # Page 1 is written when the file grows: the header there holds the database's size in pages.
    owner[1] = "page 1 (the header: the file grew)"
    keep.close()
    pages = collections.Counter(owner.get(p, f"page {p}") for c in commits for p in c)
    begun = [s for s in statements if s.startswith("BEGIN")]
    kinds = collections.Counter(" ".join(s.split()[:3]) for s in statements if not s.startswith("PRAGMA"))
    return (
        [(name, n / len(commits)) for name, n in pages.most_common()],
        [(kind, n / len(begun)) for kind, n in kinds.most_common()],
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m timeline_bench.pages", description=__doc__)
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--signed", action="store_true", help="with a signing key (a checkpoint a commit)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        pages, statements = asyncio.run(count(Path(folder), args.writes, args.signed))
    print(f"| b-tree | pages per commit ({sum(n for _, n in pages):.2f} in all) |\n|---|---:|")
    for name, n in pages:
        print(f"| {name} | {n:.2f} |")
    print(f"\n| statement | per write ({sum(n for _, n in statements):.2f} in all) |\n|---|---:|")
    for kind, n in statements:
        print(f"| {kind} | {n:.2f} |")


if __name__ == "__main__":
    main()
