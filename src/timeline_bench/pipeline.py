"""An import of the bench fixture without its rules and views: what the rest of it costs on two cores.

The fixture's YAML is read by timeline's reader in a process of its own, a chunk of entries at a time (as a
streaming reader would hand them over), while this process chains the events with the import's own
``Batch.append`` and stores them, with the claim, timeline and estimate rows the real import stored, in one
transaction. It leaves out the rules, the views' fold, the stream records, the Merkle tree's nodes and the
per-entry metadata that an import also does or writes (and does some work an import does not: moving the
events between processes, reading each chunk's document again): an import on the same reader and cores would
have to do those in whatever CPU this leaves idle.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import multiprocessing
import queue
import sqlite3
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

import asyncpg
import msgspec

from timeline import heap
from timeline.domain.events import DocumentRegistered, DomainEvent
from timeline.domain.streams import stream_of
from timeline.domain.values import valid_from
from timeline.fixtures import parse, to_events
from timeline.store import chain, driver, eventlog
from timeline_bench.baselines import _COLUMNS, _STORE_SQLITE, pg_dsn, read_stored, sqlite_path

# Entries a chunk: 100, 250 and 500 ran within each other's noise on both databases (§4 of
# bench/results-2026-12-05-twelfth-import-ceiling.txt). Smaller chunks let the writer start sooner and finish
# sooner after the reader; larger ones cost fewer statements.
CHUNK = 250
_EVENTS = msgspec.msgpack.Decoder(list[DomainEvent])
_READY = b"ready"
# How long the writer waits for the reader's next message before calling it stuck (a chunk takes ms).
_PATIENCE = 120.0
_Rows = list[tuple[Any, ...]]


def chunks(text: str, size: int) -> list[str]:
    """The bench fixture (``imports._fixture_text``) as fixtures of ``size`` entries each, the first with
    its subjects and sources, every one with its document (a chunk's copy of it is dropped when read)."""
    head, found, body = text.partition("\nevents:\n")
    if not found or not body.startswith("- type:"):
        raise ValueError("expected the bench fixture's layout: a top-level 'events:' list of '- type:' items")
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
    gc.freeze()  # its start-up heap out of collections, as `timeline import` keeps its own
    out.send_bytes(_READY)
    for index, part in enumerate(chunks(start.recv_bytes().decode(), size)):
        events = [event for _, event in to_events(parse(part, "bench.yaml"))]
        if index > 0 and isinstance(events[0], DocumentRegistered):
            events = events[1:]
        out.send_bytes(encoder.encode(events))
    out.close()


class _Inbox:
    """The reader's chunks, taken off the pipe by a thread as soon as they are sent: a pipe holds about one
    chunk, so a writer busy storing the last one would otherwise hold the reader up."""

    def __init__(self, pipe: Connection, parts: int) -> None:
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._drain, args=(pipe, parts), daemon=True)
        self._thread.start()

    def _drain(self, pipe: Connection, parts: int) -> None:
        try:
            for _ in range(1 + parts):  # the reader's "ready", then its chunks
                self._chunks.put(pipe.recv_bytes())
        except (EOFError, OSError):
            self._chunks.put(None)

    def ready(self) -> bytes:
        """The reader's first message: that it is ready (empty if it ended first)."""
        return self._next() or b""

    def take(self) -> bytes:
        """The next chunk, waiting for it; a reader gone before sending it is an error."""
        data = self._next()
        if data is None:
            raise RuntimeError("the reading process ended before sending every chunk")
        return data

    def _next(self) -> bytes | None:
        try:
            return self._chunks.get(timeout=_PATIENCE)
        except queue.Empty:
            raise RuntimeError(f"the reading process sent nothing for {_PATIENCE:g} s") from None

    def join(self) -> None:
        self._thread.join(timeout=10)


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
    dealt = _dealt(stored, len(chunks(text.decode(), size)))
    context = multiprocessing.get_context("spawn")
    start_reading, start = context.Pipe(duplex=False)
    received, out = context.Pipe(duplex=False)
    reader = context.Process(target=_read, args=(start_reading, out, size), daemon=True)
    inbox: _Inbox | None = None
    try:
        reader.start()
        start_reading.close()
        out.close()
        inbox = _Inbox(received, len(dealt))
        count, seconds = await _timed(dialect, text, empty, start, inbox, dealt)
    finally:
        # With the text's end closed, a reader still waiting for it stops at once; the inbox takes whatever
        # else it sends, so it never waits on a full pipe. (Closing an end twice does nothing.)
        start_reading.close()
        out.close()
        start.close()
        if reader.pid is not None:
            reader.join(timeout=10)
            if reader.is_alive():
                reader.kill()
                reader.join()
        received.close()
        if inbox is not None:
            inbox.join()
    if reader.exitcode != 0:
        raise RuntimeError(f"the reading process exited with {reader.exitcode}")
    if count != len(stored["events"]):
        raise RuntimeError(f"stored {count} events where the import stored {len(stored['events'])}")
    return count / seconds


async def _timed(
    dialect: str, text: bytes, empty: str, start: Connection, inbox: _Inbox, dealt: list[dict[str, _Rows]]
) -> tuple[int, float]:
    """The events stored and the seconds it took, from the text's sending to the commit."""
    # The reader's modules are imported and the connection made before the clock starts.
    lite = sqlite3.connect(sqlite_path(empty), isolation_level=None) if dialect == "sqlite" else None
    pg = await asyncpg.connect(pg_dsn(empty)) if lite is None else None
    try:
        if await asyncio.to_thread(inbox.ready) != _READY:
            raise RuntimeError("the reading process did not start")
        chained = _Chained(dialect)
        with heap.frozen():  # as the import it is compared with runs
            began = time.perf_counter()
            start.send_bytes(text)
            if lite is not None:
                count = _stored_sqlite(lite, inbox, chained, dealt)
            else:
                assert pg is not None
                count = await _stored_postgres(pg, inbox, chained, dealt)
            return count, time.perf_counter() - began
    except BaseException:
        if pg is not None:
            pg.terminate()  # spares close()'s round trip, which could fail and hide the error on its way out
            pg = None
        raise
    finally:
        if lite is not None:
            lite.close()
        if pg is not None:
            await pg.close()


def _dealt(stored: dict[str, _Rows], parts: int) -> list[dict[str, _Rows]]:
    """The import's claim and timeline rows dealt out over the chunks, to be stored with each (so they are
    stored while the next chunk is read, not all after the last); its few estimate rows with the last."""
    dealt: list[dict[str, _Rows]] = [{} for _ in range(parts)]
    for name in ("claims", "timeline"):
        rows = stored[name]
        for index, part in enumerate(dealt):
            part[name] = rows[len(rows) * index // parts : len(rows) * (index + 1) // parts]
    dealt[-1]["estimates"] = stored["estimates"]
    return dealt


def _stored_sqlite(
    conn: sqlite3.Connection, inbox: _Inbox, chained: _Chained, dealt: list[dict[str, _Rows]]
) -> int:
    """Each chunk's events chained and stored with its share of the view rows, in one transaction."""
    count = 0
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    for part in dealt:
        rows = chained.rows(inbox.take())
        conn.executemany(_STORE_SQLITE["events"], rows)
        count += len(rows)
        for name, views in part.items():
            conn.executemany(_STORE_SQLITE[name], views)
    conn.execute("COMMIT")
    return count


async def _stored_postgres(
    pg: asyncpg.Connection, inbox: _Inbox, chained: _Chained, dealt: list[dict[str, _Rows]]
) -> int:
    """``_stored_sqlite`` by COPY: a COPY a table a chunk, in one transaction."""
    count = 0
    async with pg.transaction():
        for part in dealt:
            rows = chained.rows(await asyncio.to_thread(inbox.take))
            await pg.copy_records_to_table("events", records=rows, columns=_COLUMNS["events"])
            count += len(rows)
            for name, views in part.items():
                await pg.copy_records_to_table(name, records=views, columns=_COLUMNS[name])
    return count
