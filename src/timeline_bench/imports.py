"""Importing one big fixture file, against loading as many rows raw."""

from __future__ import annotations

import time
from typing import Any

import yaml

from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.store.database import Database
from timeline_bench.baselines import raw_insert, raw_rows
from timeline_bench.measure import Databases, Result, Stats


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
        rows = raw_rows(result.appended, "r")
        start = time.perf_counter()
        await raw_insert(dialect, raw_url, rows, 1000, copy=dialect == "postgresql")
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
