"""The fastest an import of the bench fixture could run on this machine if it applied no rules and folded
no views: its YAML read by timeline's reader in a process of its own, a chunk of entries at a time (as a
streaming reader would hand them over), while this process chains the events and stores the rows the real
import stored, all in one transaction. An import must do all of this and more, so a target above this
pipeline's rate is out of reach of an import that reads fixtures as timeline does."""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import sqlite3
import time
from multiprocessing.connection import Connection
from typing import Any

import asyncpg
import msgspec
from sqlalchemy.engine import make_url

from timeline.domain.events import DocumentRegistered, DomainEvent
from timeline.domain.streams import stream_of
from timeline.domain.values import valid_from
from timeline.fixtures import parse, to_events
from timeline.store import chain, driver, eventlog
from timeline_bench.baselines import _COLUMNS, _STORE_SQLITE, pg_dsn, read_stored

# Entries a chunk: 100, 250 and 500 ran within each other's noise on both databases (§4 of
# bench/results-2026-12-05-twelfth-import-ceiling.txt). Smaller chunks let the writer start sooner and finish
# sooner after the reader; larger ones cost fewer statements.
CHUNK = 250
_EVENTS = msgspec.msgpack.Decoder(list[DomainEvent])
_READY = b"ready"


def chunks(text: str, size: int) -> list[str]:
    """The bench fixture (``imports._fixture_text``) as fixtures of ``size`` entries each, the first with
    its subjects and sources, every one with its document (a chunk's copy of it is dropped when read)."""
    head, found, body = text.partition("\nevents:\n")
    assert found, "not the bench fixture's layout"
    assert body.startswith("- type:"), "not the bench fixture's layout"
    document = head.partition("\nsubjects:\n")[0] + "\n"
    entries = ["- type:" + entry for entry in body.removeprefix("- type:").split("\n- type:")]
    return [
        (head + "\n" if start == 0 else document) + "events:\n" + "\n".join(entries[start : start + size])
        for start in range(0, len(entries), size)
    ]


def _read(start: Connection, out: Connection, size: int) -> None:
    """The reading process: once started (its modules imported), it waits for the text, then sends each
    chunk's events as it has read them."""
    encoder = msgspec.msgpack.Encoder()
    out.send_bytes(_READY)
    for index, part in enumerate(chunks(start.recv_bytes().decode(), size)):
        events = [event for _, event in to_events(parse(part, "bench.yaml"))]
        if index > 0 and isinstance(events[0], DocumentRegistered):
            events = events[1:]
        out.send_bytes(encoder.encode(events))
    out.close()


def _dealt(stored: dict[str, list[tuple[Any, ...]]], parts: int) -> list[dict[str, list[tuple[Any, ...]]]]:
    """The import's claim and timeline rows dealt out over the chunks, to be stored with each (so they are
    stored while the next chunk is read, not all after the last); its few estimate rows with the last."""
    dealt: list[dict[str, list[tuple[Any, ...]]]] = [{} for _ in range(parts)]
    for name in ("claims", "timeline"):
        rows = stored[name]
        for index, part in enumerate(dealt):
            part[name] = rows[len(rows) * index // parts : len(rows) * (index + 1) // parts]
    dealt[-1]["estimates"] = stored["estimates"]
    return dealt


class _Chained:
    """The events of each chunk, chained from the empty log's head as an import appends them."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.batch = eventlog.Batch(0, chain.GENESIS, dt.datetime.now(dt.UTC))
        self.metadata = eventlog.Metadata(recorded_by="bench", origin="bench.yaml")
        self.versions: dict[str, int] = {}

    def rows(self, data: bytes) -> list[driver.Row]:
        for event in _EVENTS.decode(data):
            stream = stream_of(event)
            version = self.versions[stream] = self.versions.get(stream, 0) + 1
            self.batch.append(stream, version, event, valid_from(event), self.metadata)
        return [driver.event_row(row, self.dialect) for row in self.batch.take()]


async def pipelined(dialect: str, text: bytes, written: str, empty: str, size: int = CHUNK) -> float:
    """Events a second with which ``text`` is read in another process and chained and stored here, chunk by
    chunk, into the empty timeline database ``empty``, with the view rows the import into ``written`` made
    (its rules and fold not run: their rows are written as they came out)."""
    stored = await read_stored(dialect, written)
    parts = len(chunks(text.decode(), size))
    views = _dealt(stored, parts)
    context = multiprocessing.get_context("spawn")
    start_reading, start = context.Pipe(duplex=False)
    received, out = context.Pipe(duplex=False)
    reader = context.Process(target=_read, args=(start_reading, out, size), daemon=True)
    reader.start()
    start_reading.close()
    out.close()
    # The connection is made, and the reader's modules imported, before the clock starts.
    lite = sqlite3.connect(_path(empty), isolation_level=None) if dialect == "sqlite" else None
    pg = await asyncpg.connect(pg_dsn(empty)) if lite is None else None
    try:
        assert received.recv_bytes() == _READY
        chained = _Chained(dialect)
        began = time.perf_counter()
        start.send_bytes(text)
        if lite is not None:
            count = _stored_sqlite(lite, received, chained, views)
        else:
            assert pg is not None
            count = await _stored_postgres(pg, received, chained, views)
        seconds = time.perf_counter() - began
    finally:
        if lite is not None:
            lite.close()
        if pg is not None:
            await pg.close()
        reader.join(timeout=10)
        if reader.is_alive():
            reader.kill()
    assert count == len(stored["events"]), (count, len(stored["events"]))
    return count / seconds


def _path(url: str) -> str:
    path = make_url(url).database
    assert path is not None
    return path


def _stored_sqlite(
    conn: sqlite3.Connection,
    received: Connection,
    chained: _Chained,
    views: list[dict[str, list[tuple[Any, ...]]]],
) -> int:
    count = 0
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    for part in views:
        rows = chained.rows(received.recv_bytes())
        conn.executemany(_STORE_SQLITE["events"], rows)
        count += len(rows)
        for name, dealt in part.items():
            conn.executemany(_STORE_SQLITE[name], dealt)
    conn.execute("COMMIT")
    return count


async def _stored_postgres(
    pg: asyncpg.Connection,
    received: Connection,
    chained: _Chained,
    views: list[dict[str, list[tuple[Any, ...]]]],
) -> int:
    count = 0
    async with pg.transaction():
        for part in views:
            # The pipe is read on a thread, so the server's COPY of the last chunk goes on meanwhile.
            rows = chained.rows(await asyncio.to_thread(received.recv_bytes))
            await pg.copy_records_to_table("events", records=rows, columns=_COLUMNS["events"])
            count += len(rows)
            for name, dealt in part.items():
                await pg.copy_records_to_table(name, records=dealt, columns=_COLUMNS[name])
    return count
