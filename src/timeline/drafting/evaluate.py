"""Scores drafts against the hand-annotated corpus (corpus/drafting/, format in docs/drafting.md).

    python -m timeline.drafting.evaluate                # both tables: development set, then test set
    python -m timeline.drafting.evaluate --set dev --errors   # the development set, with every miss listed

Precision and recall per kind. A drafted item matches an annotated one when its sentence contains the
annotation's quote and, as the kind requires, its source is one the annotation accepts (same words, either
way round), its figure has the same comparator and values, its modality, evidence kind or date is the same.
Matching is one to one. Errors are listed for the development set only: the test set is for reporting.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from timeline.drafting import cues
from timeline.drafting.assemble import draft

KINDS = ["claim", "figure+comparator", "modality", "denial", "confirmation", "evidence", "date"]
CORPUS = Path(__file__).resolve().parents[3] / "corpus" / "drafting"
# One item: (sentence, source name or "", key); the key holds what else must be equal.
Item = tuple[str, str, tuple[Any, ...]]


@dataclass
class Score:
    """Counts for one kind over a set of articles, and the misses, for the development set's listing."""

    gold: int = 0
    drafted: int = 0
    matched: int = 0
    missed: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.matched / self.drafted if self.drafted else 1.0

    @property
    def recall(self) -> float:
        return self.matched / self.gold if self.gold else 1.0


def load(corpus: Path, which: str) -> list[dict[str, Any]]:
    """The annotated articles of a set ("dev", "test" or "all"), in file order."""
    articles = [yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(corpus.glob("*.yaml"))]
    return [a for a in articles if which in ("all", a["set"])]


def evaluate(
    articles: Iterable[dict[str, Any]], drafter: Callable[..., dict[str, Any]] = draft
) -> tuple[dict[str, Score], int]:
    """Scores per kind over these articles, and how many denials were drafted from negated sentences."""
    scores = {kind: Score() for kind in KINDS}
    negated_denials = 0
    for article in articles:
        published = article["published"]
        if not isinstance(published, dt.date):
            published = dt.date.fromisoformat(str(published))
        fixture = drafter(article["text"], published=published, title=article["title"])
        gold, drafted = _gold(article), _drafted(fixture)
        for kind in KINDS:
            _match(scores[kind], gold[kind], drafted[kind], article["id"])
        negated_denials += sum(
            1
            for e in fixture["events"]
            if e["type"] == "denial"
            and (cues.NO_COMMENT.search(e["statement"]) or not cues.denies(e["statement"]))
        )
    return scores, negated_denials


def table(scores: dict[str, Score], title: str) -> str:
    """A Markdown table of the scores."""
    lines = [
        f"{title}",
        "",
        "| kind | annotated | drafted | matched | precision | recall |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, s in scores.items():
        lines.append(
            f"| {kind} | {s.gold} | {s.drafted} | {s.matched} | {s.precision:.2f} | {s.recall:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the tables (and, for the development set, the errors)."""
    parser = argparse.ArgumentParser(
        prog="python -m timeline.drafting.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--set", choices=["dev", "test", "both"], default="both", dest="which")
    parser.add_argument("--errors", action="store_true", help="list misses and wrong drafts (dev set only)")
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    args = parser.parse_args(argv)
    if args.errors and args.which != "dev":
        parser.error(
            "--errors lists the development set only (--set dev): the test set is never tuned against"
        )
    for which, title in (("dev", "Development set"), ("test", "Test set")):
        if args.which not in (which, "both"):
            continue
        articles = load(args.corpus, which)
        scores, negated = evaluate(articles)
        print(table(scores, f"{title} ({len(articles)} articles)"))
        print(f"\nDenials drafted from negated or hedged sentences: {negated}\n")
        if args.errors:
            for kind, s in scores.items():
                for line in s.missed:
                    print(f"MISSED {kind}: {line}")
                for line in s.wrong:
                    print(f"WRONG  {kind}: {line}")
    return 0


def _gold(article: dict[str, Any]) -> dict[str, list[tuple[str, list[str], tuple[Any, ...]]]]:
    figures = article.get("figures") or []
    out: dict[str, list[tuple[str, list[str], tuple[Any, ...]]]] = {kind: [] for kind in KINDS}
    for f in figures:
        out["claim"].append((f["quote"], f["source"], ()))
        out["figure+comparator"].append((f["quote"], f["source"], _quantity(f)))
        out["modality"].append((f["quote"], f["source"], (*_quantity(f), f["modality"])))
    for c in article.get("claims") or []:
        out["claim"].append((c["quote"], c["source"], ()))
    for kind, key in (("denial", "denials"), ("confirmation", "confirmations")):
        out[kind] = [(d["quote"], d["source"], ()) for d in article.get(key) or []]
    out["evidence"] = [(e["quote"], [], (e["kind"],)) for e in article.get("evidence") or []]
    out["date"] = [(d["quote"], [], (str(d["date"]),)) for d in article.get("dates") or []]
    return out


def _drafted(fixture: dict[str, Any]) -> dict[str, list[Item]]:
    names = {s["id"]: s["name"] for s in fixture["sources"]}
    out: dict[str, list[Item]] = {kind: [] for kind in KINDS}
    dated: set[tuple[str, str]] = set()
    for e in fixture["events"]:
        sentence = e["draft"]["sentence"]
        name = names.get(e.get("source", ""), e.get("source", ""))
        if e["type"] in ("claim", "revision"):
            out["claim"].append((sentence, name, ()))
            if "quantity" in e:
                out["figure+comparator"].append((sentence, name, _quantity(e["quantity"])))
                out["modality"].append((sentence, name, (*_quantity(e["quantity"]), e.get("modality"))))
        elif e["type"] in ("denial", "confirmation"):
            out[e["type"]].append((sentence, name, ()))
        elif e["type"] == "evidence":
            out["evidence"].append((sentence, "", (e["kind"],)))
        if "stated_on" in e and e["type"] != "evidence" and (sentence, e["stated_on"]) not in dated:
            dated.add((sentence, e["stated_on"]))
            out["date"].append((sentence, "", (e["stated_on"],)))
    return out


def _quantity(q: dict[str, Any]) -> tuple[Any, ...]:
    return (
        q["comparator"],
        *(float(q[k]) if q.get(k) is not None else None for k in ("value", "lower", "upper")),
    )


def _match(
    score: Score, gold: list[tuple[str, list[str], tuple[Any, ...]]], drafted: list[Item], article: str
) -> None:
    score.gold += len(gold)
    score.drafted += len(drafted)
    free = list(range(len(drafted)))
    for quote, sources, key in gold:
        hit = next(
            (
                i
                for i in free
                if _norm(quote) in _norm(drafted[i][0])
                and drafted[i][2] == key
                and (not sources or any(_same_source(s, drafted[i][1]) for s in sources))
            ),
            None,
        )
        if hit is None:
            score.missed.append(f"{article}: {quote!r} {sources} {key}")
        else:
            free.remove(hit)
            score.matched += 1
    score.wrong.extend(
        f"{article}: {drafted[i][1]!r} {drafted[i][2]} in {drafted[i][0][:90]!r}" for i in free
    )


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _words(name: str) -> set[str]:
    name = re.sub(r"['\u2019]s\b", "", name.lower())
    return {w for w in re.findall(r"[a-z0-9]+", name) if w not in ("the", "a", "an")}


def _same_source(gold: str, drafted: str) -> bool:
    g, d = _words(gold), _words(drafted)
    return bool(g and d) and (g <= d or d <= g)


if __name__ == "__main__":
    sys.exit(main())
