"""A timeline server in its own process, and wrk loading it: what the HTTP benchmarks stand on."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid

import httpx
import msgspec

from timeline import signing
from timeline.store import tokens, tree
from timeline.store.database import Database


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, workers: int = 1, **env: str) -> None:
        self.url = url
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "timeline",
                "--database-url",
                url,
                "serve",
                "--no-fixtures",
                "--port",
                str(self.port),
                "--workers",
                str(workers),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TIMELINE_PROJECTION_BATCH": "2000", **env},
        )

    async def ready(self) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{self.base}/ping")).status_code == 200:
                        return
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        raise TimeoutError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Load(msgspec.Struct, frozen=True):
    """What wrk measured: requests/s, latency percentiles (ms) and failed requests."""

    rate: float
    p50: float
    p99: float
    errors: int

    @property
    def note(self) -> str:
        return f"p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms, {self.errors} errors"


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk_ms(text: str) -> float:
    number = text.rstrip("usm")
    return float(number) * _UNITS[text[len(number) :]]


def parse_wrk(output: str) -> Load:
    """Requests/s, p50, p99 and errors (non-2xx/3xx answers and socket errors) from ``wrk --latency``."""
    rate, p50, p99, errors = 0.0, 0.0, 0.0, 0
    for line in output.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            rate = float(words[1])
        elif words[:1] == ["50%"]:
            p50 = _wrk_ms(words[1])
        elif words[:1] == ["99%"]:
            p99 = _wrk_ms(words[1])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            errors += int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            errors += sum(int(w.strip(",")) for w in words[2:] if w.strip(",").isdigit())
    return Load(rate, p50, p99, errors)


def run_wrk(base: str, path: str, connections: int, seconds: float, script: str | None = None) -> Load:
    """Load ``base + path`` with wrk (a native generator, so the client costs little of the CPU)."""
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--latency",
        "--timeout",
        "10s",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if script is not None:
            lua.write(script)
            lua.flush()
            command += ["-s", lua.name]
        done = subprocess.run([*command, base + path], capture_output=True, text=True, check=True)
    return parse_wrk(done.stdout)


def distinct(path: str, parameter: str, values: list[str]) -> str:
    """A wrk script asking for ``path`` with a different ``parameter`` each request (so none is cached)."""
    listed = ", ".join(f'"{v}"' for v in values)
    return (
        f"local values = {{{listed}}}\nlocal n = 0\n"
        "request = function()\n  n = n + 1\n"
        f'  return wrk.format(nil, "{path}{parameter}=" .. values[(n % #values) + 1])\nend\n'
    )


def revisions(token: str, claims: int) -> str:
    """A wrk script POSTing revisions, each with its own id, round-robin over ``claims`` claims."""
    body = json.dumps(
        {
            "statement": "new",
            "stated_on": "2024-10-25",
            "document_ids": ["bench-doc"],
            "revision_id": f"http-{uuid.uuid4().hex[:8]}-%d",
        }
    )
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        f"local template = [[{body}]]\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        f'  local path = "/claims/c" .. (n % {claims}) .. "/revisions"\n'
        "  return wrk.format(nil, path, nil, string.format(template, n))\n"
        "end\n"
    )


async def write_token(url: str) -> str:
    db = Database(url)
    try:
        async with db.write() as conn:
            return await tokens.create(conn, f"bench-{uuid.uuid4().hex[:6]}", ("write",))
    finally:
        await db.dispose()


async def signed_key(url: str) -> str:
    """A new signing key (its private text, for a server's TIMELINE_SIGNING_KEY) that has signed the head of
    the log at ``url``, as an operator does once after loading a log (``timeline keys sign-head``): the
    server's writes then extend a signed log. Over an unsigned one, each write transaction would read the
    tree and the latest checkpoint back (four statements) and log that its events are left unsigned."""
    signer = signing.Signer.generate("bench.example/log")
    db = Database(url)
    try:
        async with db.write() as conn:
            head, _ = await tree.extend(conn)
            if head:
                await tree.sign_head(conn, signer, head)
    finally:
        await db.dispose()
    return signer.private_text()
