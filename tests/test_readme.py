"""The README cannot lie: every shell example in it runs, in order, against a real `timeline serve` on each
database, and prints what the README shows (volatile values masked). `make readme` rewrites the outputs."""

from __future__ import annotations

from . import readme


def test_the_runner_finds_every_example_and_its_output() -> None:
    examples = readme.parse(readme.README.read_text())
    assert len(examples) >= 25
    commands = [e.command for e in examples]
    assert not any(c.startswith(("make serve", "make test", "docker compose")) for c in commands)
    health = next(e for e in examples if e.command == "curl localhost:8000/health")
    assert health.lang == "json"
    assert health.expected is not None
    assert '"status": "ok"' in health.expected


def test_masking_hides_only_what_changes_from_run_to_run() -> None:
    a = '{"recorded_at": "2026-11-25T21:39:00.081411Z", "hash": "' + "a" * 64 + '", "position": 31}'
    b = '{"recorded_at": "2026-12-03T07:10:27.849479Z", "hash": "' + "b" * 64 + '", "position": 31}'
    assert readme.mask(a) == readme.mask(b)
    assert readme.mask(a) != readme.mask(a.replace("31", "32"))


async def test_every_readme_example_prints_what_the_readme_shows(database_url: str) -> None:
    import asyncio

    outcomes = await asyncio.to_thread(readme.run, database_url)
    wrong = [o.diff() for o in outcomes if not o.matches]
    assert not wrong, "\n\n".join(wrong) + "\n\n(run `make readme` if the change is intended)"
    # The examples that show no output still ran without an error.
    for outcome in outcomes:
        assert "curl: (" not in outcome.stderr, outcome.stderr
