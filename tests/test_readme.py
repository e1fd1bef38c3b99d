"""The README cannot lie: every shell example in it runs, in order, against a real `timeline serve` on each
database, and prints what the README shows (volatile values masked). `make readme` rewrites the outputs."""

from __future__ import annotations

import re

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


def test_terminal_transcripts_are_examples_too() -> None:
    text = "```\n$ timeline --help\nUsage: timeline\n$ timeline verify --since x\nerror: no\n[exit 1]\n```\n"
    examples = readme.parse(text)
    assert [(e.command, e.expected, e.transcript) for e in examples] == [
        ("timeline --help", "Usage: timeline", True),
        ("timeline verify --since x", "error: no\n[exit 1]", True),
    ]
    # The README's own: the help and every error example of the exit-code table.
    commands = [e.command for e in readme.parse(readme.README.read_text()) if e.transcript]
    assert "timeline --help" in commands
    assert "timeline verify --since ²" in commands


def test_an_example_that_fails_differs_unless_its_output_shows_the_exit_code() -> None:
    silent = readme.Example(line=1, command="curl localhost:1/health")
    assert not readme.Outcome(silent, "", "", returncode=7).matches
    assert "exited 7" in readme.Outcome(silent, "", "", returncode=7).diff()
    assert readme.Outcome(silent, "", "", returncode=0).matches
    shown = readme.Example(1, "timeline x", lang="", expected="error: x\n[exit 1]", transcript=True)
    assert readme.Outcome(shown, "error: x\n[exit 1]", "", returncode=1).matches
    assert not readme.Outcome(shown, "error: x\n[exit 4]", "", returncode=4).matches


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
    # Those that show no output ran too, and exited 0 (a failure is a difference above).
    assert all(o.returncode == 0 for o in outcomes if not o.example.transcript)
    assert any(o.example.transcript and o.returncode == 4 for o in outcomes)


def test_the_readme_lists_every_option_of_serve() -> None:
    import re

    from timeline.cli.serving import serve

    listed = re.search(r"`serve ([^`]*)`", " ".join(readme.README.read_text().split()))
    assert listed is not None
    options = {opt for param in serve.params for opt in param.opts if opt.startswith("--")}
    assert options
    assert options <= set(re.findall(r"--[a-z-]+", listed.group(1))), listed.group(1)


def test_every_results_file_the_docs_cite_is_committed() -> None:
    # A figure cited in the README or docs/ stands on a results file beside it: one cited but never added
    # to the repository would be missing from a clean checkout, which is what CI runs on.
    root = readme.README.parent
    texts = [readme.README.read_text(), *(p.read_text() for p in sorted((root / "docs").glob("*.md")))]
    cited = {path for text in texts for path in re.findall(r"bench/results[\w.-]*\.(?:json|txt)", text)}
    assert len(cited) > 20
    assert sorted(path for path in cited if not (root / path).is_file()) == []
