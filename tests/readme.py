"""Runs the README's shell examples, in order, against a real ``timeline serve``, and compares (or rewrites)
the output shown after each one.

An example is a ```sh block; the fenced block right after it (only blank lines between) is its output. An
unlabelled block whose lines start with ``$ `` is a terminal transcript: each ``$ COMMAND`` line is an example
whose output (standard output and error, as a terminal shows them) is the lines up to the next ``$``; one that
exits non-zero ends its output with ``[exit N]``. Every example must exit 0 unless its output shows the
``[exit N]`` it ends with. Each block runs in bash in one scratch directory (the repository's top-level
entries linked into it, so
``.venv/bin/timeline`` and ``fixtures/...`` work and files the examples write stay there); variables a block
sets (``TOKEN=...``) are seen by the blocks after it. ``localhost:8000`` is the served instance.
``<!-- readme: skip -->`` on the line before a block leaves it out (``make serve``, ``make test``, ``docker
compose up``: what the runner itself stands in for).

JSON output is compared (and written) pretty-printed, as a reader wants it; volatile values (times, ids,
hashes, secrets, ports, dates in headers, the database's name) are masked on both sides before comparing.

    python -m tests.readme            # check, on SQLite; exit 1 and a diff on any difference
    python -m tests.readme --update   # rewrite the outputs in README.md from a real run (`make readme`)
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SKIP = "<!-- readme: skip -->"
FENCE = re.compile(r"^```(\S*)\s*$")
# Per block: five CLI starts on 2 shared cores under load can take a minute or more.
TIMEOUT = 300


@dataclass
class Example:
    """One ```sh block and the output block after it (``output_lines`` is None when there is none)."""

    line: int  # 1-based line of the command's opening fence
    command: str
    lang: str | None = None
    output_lines: tuple[int, int] | None = None  # [start, end) of the output's body, 0-based
    expected: str | None = None
    transcript: bool = False  # a ``$ COMMAND`` line: stderr shown with stdout, a failure as ``[exit N]``


def parse(text: str) -> list[Example]:
    """Every example in ``text``, in order."""
    lines = text.split("\n")
    blocks: list[tuple[str, int, int]] = []  # (lang, body start, body end), 0-based, end is the closing fence
    i = 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened:
            j = i + 1
            while j < len(lines) and lines[j].rstrip() != "```":
                j += 1
            blocks.append((opened.group(1), i + 1, j))
            i = j + 1
        else:
            i += 1
    examples: list[Example] = []
    for n, (lang, start, end) in enumerate(blocks):
        before = [line for line in lines[: start - 1] if line.strip()]
        if before and before[-1].strip() == SKIP:
            continue
        if lang == "" and start < end and lines[start].startswith("$ "):
            examples.extend(_transcript(lines, start, end))
            continue
        if lang != "sh":
            continue
        example = Example(line=start, command="\n".join(lines[start:end]))
        if n + 1 < len(blocks):
            next_lang, next_start, next_end = blocks[n + 1]
            between = lines[end + 1 : next_start - 1]
            if next_lang != "sh" and all(not line.strip() for line in between):
                example.lang = next_lang
                example.output_lines = (next_start, next_end)
                example.expected = "\n".join(lines[next_start:next_end])
        examples.append(example)
    return examples


def _transcript(lines: list[str], start: int, end: int) -> Iterator[Example]:
    """The ``$ COMMAND`` examples of the unlabelled block whose body is ``lines[start:end]``."""
    starts = [i for i in range(start, end) if lines[i].startswith("$ ")]
    for k, i in enumerate(starts):
        stop = starts[k + 1] if k + 1 < len(starts) else end
        yield Example(
            line=i + 1,
            command=lines[i][2:],
            lang="",
            output_lines=(i + 1, stop),
            expected="\n".join(lines[i + 1 : stop]),
            transcript=True,
        )


def _pretty_json(text: str) -> str | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return json.dumps(value, indent=2, ensure_ascii=False)


def render(lang: str | None, out: str) -> str:
    """The output as the README shows it: JSON pretty-printed (a response's body too), no trailing blanks."""
    out = out.replace("\r\n", "\n").rstrip("\n")
    if lang == "json":
        return _pretty_json(out) or out
    if lang == "http":
        head, sep, body = out.partition("\n\n")
        pretty = _pretty_json(body) if body else None
        return head + sep + (pretty if pretty is not None else body)
    return out


_MASKS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?"), "<time>"),
    (re.compile(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT"), "<http-date>"),
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<uuid>"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<hash>"),
    (re.compile(r"\b[0-9a-f]{32}\b"), "<id>"),
    (re.compile(r"(?<![-\w])[0-9a-f]{16}\b"), "<id>"),
    (re.compile(r"\btl_[A-Za-z0-9_-]{20,}"), "<secret>"),
    (re.compile(r"(localhost|127\.0\.0\.1):\d+"), r"\1:<port>"),
    (re.compile(r"(?im)^(content-length|x-request-id|date): .*$"), r"\1: <volatile>"),
    (re.compile(r'"database": "\w+"'), '"database": "<database>"'),
    (re.compile(r"(sqlite\+aiosqlite|postgresql)://\S+"), "<database-url>"),
    (re.compile(r"\d+(\.\d+)? ?(ms|s)\b"), "<duration>"),
]


def mask(text: str) -> str:
    """``text`` with every volatile value replaced by a placeholder."""
    for pattern, placeholder in _MASKS:
        text = pattern.sub(placeholder, text)
    return text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def served(url: str, workdir: Path, cwd: Path) -> Iterator[int]:
    """A real ``timeline serve`` on ``url``, from the repository's .venv, in ``cwd``; yields its port."""
    port = _free_port()
    log = (workdir / "server.log").open("w")
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "timeline"), "--database-url", url, "serve", "--port", str(port)],
        cwd=cwd,  # its var/timeline.key (made on start) is the one `timeline keys show` reads there
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"timeline serve exited: {(workdir / 'server.log').read_text()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5),
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError("timeline serve did not answer /health within two minutes")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _scratch(workdir: Path) -> Path:
    """A directory holding links to the repository's top-level entries, where the examples run."""
    here = workdir / "repo"
    here.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".git", "var"):
            (here / entry.name).symlink_to(entry)
    return here


@dataclass
class Outcome:
    """What one example printed, as the README would show it."""

    example: Example
    actual: str
    stderr: str
    returncode: int = 0

    @property
    def matches(self) -> bool:
        """Whether it exited 0 (or is a transcript, showing its exit code) and printed the README's output,
        volatile values masked."""
        if self.returncode != 0 and not self.example.transcript:
            return False
        if self.example.expected is None:
            return True
        return mask(self.actual) == mask(self.example.expected.rstrip("\n"))

    def diff(self) -> str:
        """The masked difference, README first."""
        expected = mask(self.example.expected or "").splitlines()
        lines = difflib.unified_diff(
            expected, mask(self.actual).splitlines(), "README.md", "actual", lineterm="", n=2
        )
        told = "\n".join(lines)
        if self.returncode != 0 and not self.example.transcript:
            told = f"exited {self.returncode}\n{told}"
        return f"README.md:{self.example.line}: {self.example.command.splitlines()[0]}\n{told}" + (
            f"\n(stderr: {self.stderr.strip()})" if self.stderr.strip() else ""
        )


def run(url: str, text: str | None = None) -> list[Outcome]:
    """Serve ``url`` and run every example of the README (or of ``text``) against it, in order."""
    examples = parse(README.read_text() if text is None else text)
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="readme-") as tmp:
        workdir = Path(tmp)
        cwd = _scratch(workdir)
        state = workdir / "state.sh"
        state.write_text("")
        env = {
            **os.environ,
            "TIMELINE_DATABASE_URL": url,
            "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ.get('PATH', '')}",
            "COLUMNS": "110",  # the README's width, which `--help` wraps to
        }
        env.pop("TOKEN", None)
        env.pop("ADMIN", None)
        with served(url, workdir, cwd) as port:
            for example in examples:
                command = example.command.replace("localhost:8000", f"localhost:{port}")
                # Any line of the block that fails (a pipe's first command too) fails the example; the block
                # still runs to its end, as pasted into a terminal, and its variables are kept for the next.
                script = (
                    f"set -a -o pipefail\n. {state}\n__failed=0\ntrap '__failed=$?' ERR\n{command}\n"
                    f"trap - ERR\nexport -p | grep -v ' __failed=' > {state}\nexit $__failed\n"
                )
                done = subprocess.run(
                    ["bash", "-c", script],
                    cwd=cwd,
                    env=env,
                    stdout=subprocess.PIPE,
                    # A transcript shows what a terminal would: errors interleaved with the output.
                    stderr=subprocess.STDOUT if example.transcript else subprocess.PIPE,
                    text=True,
                    timeout=TIMEOUT,
                    check=False,  # a failure is told, not raised: Outcome.matches judges it
                )
                actual = render(example.lang, done.stdout).replace(f"localhost:{port}", "localhost:8000")
                if example.transcript and done.returncode != 0:
                    actual = f"{actual}\n[exit {done.returncode}]" if actual else f"[exit {done.returncode}]"
                outcomes.append(Outcome(example, actual, done.stderr or "", done.returncode))
    return outcomes


def update(outcomes: list[Outcome], text: str) -> str:
    """``text`` with each output block replaced by what its example printed."""
    lines = text.split("\n")
    for outcome in sorted(outcomes, key=lambda o: o.example.line, reverse=True):
        span = outcome.example.output_lines
        if span is not None and not outcome.matches:
            lines[span[0] : span[1]] = outcome.actual.split("\n")
    return "\n".join(lines)


def main() -> int:
    """Check the README (or rewrite its outputs with --update) against a served SQLite database."""
    parser = argparse.ArgumentParser(prog="python -m tests.readme", description=__doc__.splitlines()[0])
    parser.add_argument("--update", action="store_true", help="rewrite README.md's outputs from this run")
    parser.add_argument("--database-url", help="a fresh database to serve (default: a new SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="readme-db-") as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'timeline.db'}"
        text = README.read_text()
        outcomes = run(url, text)
    wrong = [o for o in outcomes if not o.matches]
    if args.update:
        README.write_text(update(outcomes, text))
        print(f"README.md: {len(outcomes)} examples run, {len(wrong)} outputs rewritten")
        return 0
    for outcome in wrong:
        print(outcome.diff(), end="\n\n")
    print(f"README.md: {len(outcomes)} examples run, {len(wrong)} differ")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
