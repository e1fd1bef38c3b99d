"""``python -m timeline_bench.drafting``: drafting's time, memory and output size on 1 to 10 MB of text.

The text repeats the annotated corpus's articles (corpus/drafting/) as paragraphs, so it reads like news and
gives the rules their usual work. Each size runs in a fresh process, whose peak resident memory is measured
with getrusage. The issue's budget: 10 MB in under 30 s and under 300 MB; time and output should grow
linearly with the input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import yaml

CORPUS = Path(__file__).resolve().parents[2] / "corpus" / "drafting"


def article(megabytes: float) -> str:
    """About this many megabytes of news text, made of the corpus's articles."""
    texts = [yaml.safe_load(p.read_text(encoding="utf-8"))["text"] for p in sorted(CORPUS.glob("*.yaml"))]
    block = "\n".join(texts)
    size = int(megabytes * 1_000_000)
    return (block * (size // len(block) + 1))[:size]


def child(megabytes: float) -> None:
    """Draft the text in this process and print one JSON line: seconds, bytes, events."""
    from timeline import drafting  # noqa: PLC0415 - imported after the fork, so the parent stays small

    text = article(megabytes)
    started = time.perf_counter()
    fixture = drafting.draft(text, published=dt.date(2024, 10, 21), title="Benchmark")
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    print(json.dumps({"seconds": seconds, "peak_bytes": rss, "events": len(fixture["events"])}))


def main() -> int:
    """Run each size in a child process and print a Markdown table."""
    parser = argparse.ArgumentParser(prog="python -m timeline_bench.drafting", description=__doc__)
    parser.add_argument("--sizes", default="1,2,5,10", help="megabytes of text, comma-separated")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child)
        return 0
    print("| text | time | peak memory | events drafted | events per MB |")
    print("|---:|---:|---:|---:|---:|")
    for size in (float(s) for s in args.sizes.split(",")):
        out = subprocess.run(
            [sys.executable, "-m", "timeline_bench.drafting", "--child", str(size)],
            check=True,
            capture_output=True,
            text=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {size:g} MB | {r['seconds']:.1f} s | {r['peak_bytes'] / 1e6:.0f} MB | {r['events']:,} "
            f"| {r['events'] / size:,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
