"""Appends through the write path: one event per call, batches, signed checkpoints, concurrent writers."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence

from timeline import signing
from timeline.domain.events import DomainEvent
from timeline.domain.streams import references, stream_of
from timeline.groupcommit import Committer
from timeline.service import Recorder
from timeline.store.database import Database
from timeline_bench.baselines import (
    peer_events,
    peer_insert,
    peer_recorder,
    raw_insert,
    raw_rows,
    stored_rows,
)
from timeline_bench.generator import generate
from timeline_bench.measure import Databases, Result, Stats
from timeline_bench.seed import claim_made

# A subject, a source and a document: what every claim the benchmark writes names.
SETUP_EVENTS = 1 + 1 + 1


async def timeline_writes(
    url: str, count: int, per_call: int, tag: str, signer: signing.Signer | None = None
) -> int:
    """Events a second appended in calls of ``per_call`` claims, each call waiting for the last, through the
    application's write path: a call is a unit of group commit (``app.commands`` writes so), which a lone
    caller runs at once. Timed from the first call: the references before it are untimed setup."""
    db = Database(url, signer=signer)
    committer = Committer(db)
    try:
        await _append(committer, list(generate(SETUP_EVENTS, subjects=1, sources=1)), "setup")
        start = time.perf_counter()
        for first in range(0, count, per_call):
            await _append(committer, [claim_made(i, tag) for i in range(first, min(first + per_call, count))])
        return int(count / (time.perf_counter() - start))
    finally:
        await committer.close()
        await db.dispose()


async def _append(committer: Committer, events: Sequence[DomainEvent], label: str = "bench") -> int:
    """Record ``events`` as one unit of group commit. As app.commands does, the streams the unit reads and
    names and the events it proposes are given up front, read with the batch's one query, and the streams
    each event names are worked out once, for that query and for the rules."""
    named = [references(e) for e in events]

    async def unit(recorder: Recorder) -> int:
        recorder.act_as(recorded_by="bench", label=label)
        return len(await recorder.record_all(events, origin="", named=named))

    return await committer.run(
        unit,
        reads={stream_of(e) for e in events},
        probes=set().union(*named),
        proposed=events,
    )


def above_floor(target: float, floor: float, what: str) -> str:
    """Say so when a target rate is beyond what the database allows for the bare rows alone, measured in
    the same run: no write path that also checks rules, chains hashes and keeps views can reach it."""
    return beyond(target, floor, f"{what} alone", ", each row a timeline event's columns and nothing else")


def above_rows(target: float, rows: float) -> str:
    """Say so when a target rate is beyond the rate at which the rows a timeline write stores (its event
    and the view rows it changes) go into the database alone, measured in the same run."""
    return beyond(target, rows, "timeline's rows stored alone", ": no rules, hashing or folding")


def beyond(target: float, floor: float, what: str, made_of: str) -> str:
    """What a note says when a target rate is above a floor measured in the same run (nothing if not)."""
    # ``made_of`` says what the floor's rows are, with its leading punctuation.
    if target <= floor:
        return ""
    ratio = target / floor
    return f"the target ({target:,.0f} events/s) is {ratio:.2f}x {what} ({floor:,.0f} events/s{made_of})"


def note_of(*parts: str) -> str:
    """The parts of a result's note that say something, in order."""
    return "; ".join(part for part in parts if part)


async def bench_appends(dbs: Databases, dialect: str, per_call: int, count: int) -> Result:
    """Appends through the write path (rules, log, views) in calls of ``per_call`` events."""
    config = dbs.config
    ours, peer, raw, alone = [], [], [], []
    for _ in range(config.repeats):
        url = await dbs.fresh(dialect)
        ours.append(float(await timeline_writes(url, count, per_call, "t")))
        alone.append(await stored_rows(dialect, url, await dbs.fresh(dialect), per_call, skip=SETUP_EVENTS))
        recorder = peer_recorder(dialect, url)
        stored = peer_events(count, "p")
        start = time.perf_counter()
        peer_insert(recorder, stored, per_call)
        peer.append(count / (time.perf_counter() - start))
        rows = raw_rows(count, "r")
        raw_url = await dbs.fresh(dialect, migrated=False)
        raw.append(count / await raw_insert(dialect, raw_url, rows, per_call))
    mine, theirs, floor, own = Stats.of(ours), Stats.of(peer), Stats.of(raw), Stats.of(alone)
    baselines = {"eventsourcing": theirs, "raw INSERT" if per_call == 1 else "raw batched INSERT": floor}
    baselines["timeline's rows alone"] = own
    if per_call == 1:
        ratio = mine.median / theirs.median
        return Result(
            benchmark="append, 1 event per call",
            database=dialect,
            unit="events/s",
            timeline=mine,
            baselines=baselines,
            target=">= 1.5x eventsourcing",
            ratio=ratio,
            met=ratio >= 1.5,
            note=note_of(
                f"{mine.median / own.median:.2f}x timeline's rows alone",
                above_floor(1.5 * theirs.median, floor.median, "a raw INSERT and COMMIT of each event"),
                above_rows(1.5 * theirs.median, own.median),
            ),
        )
    ratio = mine.median / theirs.median
    raw_ratio = mine.median / floor.median
    return Result(
        benchmark="append, batches of 100",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines=baselines,
        target=">= 1x eventsourcing and >= 0.5x raw",
        ratio=ratio,
        met=ratio >= 1 and raw_ratio >= 0.5,
        note=note_of(
            f"{raw_ratio:.2f}x raw",
            f"{mine.median / own.median:.2f}x timeline's rows alone",
            above_floor(theirs.median, floor.median, "raw batched INSERTs"),
            above_rows(max(theirs.median, 0.5 * floor.median), own.median),
        ),
    )


async def bench_signing(dbs: Databases, dialect: str) -> Result:
    """Single-event writes (one transaction, so one checkpoint each) with and without the signing key: the
    cost of signing a checkpoint on every commit."""
    signed: list[float] = []
    unsigned: list[float] = []
    key = signing.Signer.generate("bench.example/log")
    # A difference of ~10% between two runs of a few hundred writes drowns in a shared machine's drift, so
    # runs go in pairs, each pair's order swapped from the last, three times the singles' writes each, and
    # the ratio is the median of the pairs' ratios rather than a ratio of medians taken minutes apart.
    # Nine pairs: with three, one host gave 0.82x, 0.97x and 0.90x on the same code (bench/results-2026-12-03-
    # night-*.json), a spread wider than the distance to the target.
    writes = 3 * dbs.config.singles
    for repeat in range(max(dbs.config.repeats, 9)):
        for signer in (None, key) if repeat % 2 == 0 else (key, None):
            rate = float(await timeline_writes(await dbs.fresh(dialect), writes, 1, "s", signer))
            (signed if signer else unsigned).append(rate)
    mine, base = Stats.of(signed), Stats.of(unsigned)
    ratio = statistics.median(s / u for s, u in zip(signed, unsigned, strict=True))
    return Result(
        benchmark="append, 1 event per call, signed checkpoints",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines={"no signing key": base},
        target=">= 0.9x without signing",
        ratio=ratio,
        met=ratio >= 0.9,
        note="one Ed25519 checkpoint per transaction, the Merkle tree kept either way; median of paired runs",
    )


async def bench_concurrent(dbs: Databases, writers: int = 32, each: int = 30) -> Result:
    """32 writers appending single events to different claims at once (PostgreSQL), against raw batched
    INSERTs of as many events (100 a transaction) on the same database in the same run. Timed from a warm
    committer (its connection open and its statements prepared, as in a running server), over enough
    batches that the first one's cost does not decide the figure."""
    rates, single, raw, alone = [], [], [], []
    for _ in range(dbs.config.repeats):
        url = await dbs.fresh("postgresql")
        singles = writers * each // 4
        single.append(float(await timeline_writes(url, singles, 1, "s")))
        rows = raw_rows(writers * each * 4, "c")
        raw.append(len(rows) / await raw_insert("postgresql", url, rows, 100))
        db = Database(url, pool_size=writers)
        committer = Committer(db)

        async def writer(tag: str, count: int, committer: Committer = committer) -> None:
            for i in range(count):
                await _append(committer, [claim_made(i, tag)])

        try:
            await asyncio.gather(*(writer(f"warm{w}", 1) for w in range(writers)))  # untimed
            start = time.perf_counter()
            await asyncio.gather(*(writer(f"w{w}", each) for w in range(writers)))
            rates.append(writers * each / (time.perf_counter() - start))
        finally:
            await committer.close()
            await db.dispose()
        # The timed writes' rows only: not the single writer's before them, nor the warm-up round's.
        before = SETUP_EVENTS + singles + writers
        alone.append(await stored_rows("postgresql", url, await dbs.fresh("postgresql"), writers, before))
    mine, base, batched, own = Stats.of(rates), Stats.of(single), Stats.of(raw), Stats.of(alone)
    ratio = mine.median / batched.median
    return Result(
        benchmark=f"append, {writers} concurrent writers",
        database="postgresql",
        unit="events/s",
        timeline=mine,
        baselines={"raw batched INSERT": batched, "1 writer": base, "timeline's rows alone": own},
        target=">= 0.25x raw batched INSERT",
        ratio=ratio,
        met=ratio >= 0.25,
        note=note_of(
            f"group commit: writes share one transaction; {mine.median / base.median:.1f}x one writer",
            f"{mine.median / own.median:.2f}x timeline's rows alone ({writers} events a transaction)",
            above_rows(0.25 * batched.median, own.median),
        ),
    )
