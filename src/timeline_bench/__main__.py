"""``python -m timeline_bench``: run the suite, print the table, write the JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import msgspec

from timeline_bench.live import run_live
from timeline_bench.measure import Config, Result
from timeline_bench.suite import GROUPS, run


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def table(results: list[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| benchmark | db | timeline (median [min-max]) | baseline (median) | ratio | target | met | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r.timeline
        base = "; ".join(f"{name} {_fmt(s.median)}" for name, s in r.baselines.items()) or "-"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        met = {True: "yes", False: "**no**", None: "-"}[r.met]
        lines.append(
            f"| {r.benchmark} | {r.database} "
            f"| {_fmt(t.median)} [{_fmt(t.min)}-{_fmt(t.max)}] {r.unit} | {base} "
            f"| {ratio} | {r.target} | {met} | {r.note} |"
        )
    return "\n".join(lines)


# Where a run's table goes unless --json says: a file git ignores, so a run never overwrites the committed
# runs the README cites (bench/results.json is the run issue #14 was filed on; a test checks the import
# target's constants against it).
LAST_RUN = Path("bench/last-run.json")


def arguments() -> argparse.ArgumentParser:
    """The command line of ``python -m timeline_bench``."""
    parser = argparse.ArgumentParser(prog="python -m timeline_bench", description=__doc__)
    parser.add_argument("--full", action="store_true", help="the big run: 1,000,000 events (takes long)")
    parser.add_argument("--events", type=int, help="events in the log for rebuild, export and HTTP reads")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--only", default=",".join(GROUPS), help=f"some of {', '.join(GROUPS)}")
    parser.add_argument("--json", type=Path, default=LAST_RUN, help=f"where the results go ({LAST_RUN})")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("TIMELINE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL database to create the benchmark databases from",
    )
    return parser


def main() -> int:
    parser = arguments()
    args = parser.parse_args()
    config = Config(postgres=args.postgres)
    if args.full:
        config = Config(
            events=1_000_000,
            imports=100_000,
            singles=2_000,
            batches=200,
            repeats=3,
            http_seconds=15,
            postgres=args.postgres,
        )
    if args.events:
        config.events = args.events
    if args.repeats:
        config.repeats = args.repeats
    dialects = [d.strip() for d in args.databases.split(",") if d.strip()]
    only = tuple(g.strip() for g in args.only.split(",") if g.strip())
    if unknown := set(only) - set(GROUPS):
        parser.error(f"--only: expected some of {', '.join(GROUPS)}, got {', '.join(sorted(unknown))}")

    def log(message: str) -> None:
        print(f"... {message}", file=sys.stderr, flush=True)

    results = asyncio.run(run(config, dialects, log, only))
    if "live" in only:
        results += asyncio.run(run_live(config, dialects, log))
    machine = {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            p: version(p)
            for p in ("sqlalchemy", "asyncpg", "aiosqlite", "litestar", "msgspec", "eventsourcing")
        },
        "sqlite": "WAL, synchronous=NORMAL",
        "postgresql": "server defaults (synchronous_commit on)",
        "config": msgspec.to_builtins(config),
    }
    print(
        f"cores {machine['cores']}, Python {machine['python']}, {machine['sqlite']} / {machine['postgresql']}"
    )
    print(f"config: {json.dumps(machine['config'])}")
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps({"machine": machine, "results": msgspec.to_builtins(results)}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
