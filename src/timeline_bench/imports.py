"""Importing one big fixture file, against loading as many rows raw, against the two things an import
cannot do without (reading its YAML, storing its rows), and against the two done at once on two processes
with the hash chain: an import without its rules and views (``pipeline``)."""

from __future__ import annotations

import time
from typing import Any

import yaml

from timeline import heap
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.fixtures import parse, to_events
from timeline.store.database import Database
from timeline_bench.appends import above_rows, beyond, note_of
from timeline_bench.baselines import raw_insert, raw_rows, stored_rows
from timeline_bench.measure import Databases, Result, Stats
from timeline_bench.pipeline import pipelined

# Issue #14 asks for ten times the import rate of the run it was filed on (bench/results.json: 725 and 627
# events/s). That run's machine was heavily loaded, so its rates do not compare with another hour's; its
# ratios to the raw baseline measured beside them do, and ten times each is the target here. That run's
# baseline timed its connection and table too, which at 10,000 rows ran it at 0.82-0.85x the rate of its
# inserts alone (bench/results-2026-12-05-seventeenth-targets.txt, section 7): if its setup weighed as much
# then, against the baseline as it is now the target is up to 1.18-1.22x stricter than ten times the filed
# rate. Kept so, not eased by an estimate.
FILED_RATIO = {"sqlite": 0.013336184671680887, "postgresql": 0.01818283862158491}
TARGET_TIMES = 10
PIPELINED = "parsing, chaining and storing, pipelined"


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


def _parsing_rate(text: bytes, events: int) -> float:
    """Events a second at which the fixture's YAML alone becomes domain events: no rules, no database."""
    start = time.perf_counter()
    proposed = list(to_events(parse(text, "bench.yaml")))
    seconds = time.perf_counter() - start
    assert len(proposed) >= events
    return events / seconds


def _in_turn(first: float, second: float) -> float:
    """The rate of two steps that run one after the other, each at its own rate (as an import runs its
    parsing and its storing today; overlapped on two cores, they could approach the slower step's rate)."""
    return 1 / (1 / first + 1 / second)


async def bench_import(dbs: Databases, dialect: str) -> Result:
    """Importing one big fixture file, against loading the same number of rows raw, parsing its YAML
    alone, storing the very rows the import stored alone (in one transaction, as the import does), and the
    import without its rules and views, pipelined on two processes (``pipeline.pipelined``)."""
    count = dbs.config.imports
    text = _fixture_text(count)
    ours, raw, parsing, alone, piped = [], [], [], [], []
    for _ in range(dbs.config.repeats):
        url = await dbs.fresh(dialect)
        db = Database(url)
        try:
            # As `timeline import` runs it (and a server, whose heap is frozen for good).
            start = time.perf_counter()
            with heap.frozen():
                [result] = await import_fixtures(db, [LoadedFixture("bench.yaml", text)], recorded_by="bench")
            ours.append(result.appended / (time.perf_counter() - start))
        finally:
            await db.dispose()
        parsing.append(_parsing_rate(text, result.appended))
        # The rows stored the fastest way each database has for thousands at once: COPY on PostgreSQL.
        empty = await dbs.fresh(dialect)
        alone.append(await stored_rows(dialect, url, empty, result.appended, 0, copy=dialect == "postgresql"))
        piped.append(await pipelined(dialect, text, url, await dbs.fresh(dialect)))
        raw_url = await dbs.fresh(dialect, migrated=False)
        rows = raw_rows(result.appended, "r")
        raw.append(len(rows) / await raw_insert(dialect, raw_url, rows, 1000, copy=dialect == "postgresql"))
    mine, floor = Stats.of(ours), Stats.of(raw)
    read, own, bare = Stats.of(parsing), Stats.of(alone), Stats.of(piped)
    ratio = mine.median / floor.median
    name = "raw COPY" if dialect == "postgresql" else "raw batched INSERT"
    wanted = TARGET_TIMES * FILED_RATIO[dialect]
    target = wanted * floor.median
    both = _in_turn(read.median, own.median)
    return Result(
        benchmark=f"import a fixture of {count:,} events",
        database=dialect,
        unit="events/s",
        timeline=mine,
        baselines={
            name: floor,
            "parsing the YAML alone": read,
            "timeline's rows alone": own,
            PIPELINED: bare,
        },
        target=f">= {wanted:.3f}x {name} ({TARGET_TIMES}x the {FILED_RATIO[dialect]:.4f}x of the run #14 was "
        "filed on)",
        ratio=ratio,
        met=ratio >= wanted,
        note=note_of(
            "includes parsing the YAML, the rules, the hash chain and the views",
            f"{mine.median / both:.2f}x parsing then storing the rows alone, one after the other "
            f"({both:,.0f} events/s)",
            above_parsing_then_rows(target, both),
            above_rows(target, own.median),
            above_pipelined(target, bare.median),
        ),
    )


def above_pipelined(target: float, bare: float) -> str:
    """Say so when the target is above the pipeline without rules (``pipeline.pipelined``) of the same run:
    an import on the same reader would have to do its rules and views in the CPU that pipeline leaves."""
    what = "parsing (in a process of its own), chaining and storing, pipelined"
    return beyond(target, bare, what, ": no rules or folding")


def above_parsing_then_rows(target: float, both: float) -> str:
    """Say so when the target is above parsing then storing the rows alone, measured in the same run."""
    what = "parsing the YAML then storing the rows alone, one after the other"
    return beyond(target, both, what, ": no rules, hashing or folding")
