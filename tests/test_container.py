"""The Dockerfile and compose.yaml, checked without a container engine (none can run on the machines CI uses:
no registry to pull a base image from, and no permission to start a container).

The image's build stage is replayed here step by step (its ENV, WORKDIR, COPY and RUN, with /opt moved into a
temporary folder), and the installed result is served and asked the image's own health check; the Dockerfile's
install commands are held to the Makefile's, and compose.yaml's wiring to the image.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from timeline.cli.serving import serve

from .conftest import ROOT

UV = ROOT / ".cache" / "tools" / "bin" / "uv"


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", path.read_text())
    result = []
    for raw in joined.splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions(ROOT / "Dockerfile"):
        if instruction[0] == "FROM":
            stages.append([])
        elif stages:
            stages[-1].append(instruction)
    return stages


def _recipe(target: str) -> list[str]:
    """The command lines of one Makefile rule."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{target}:"))
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def _install_options(commands: list[str]) -> set[str]:
    """What an install reads: lock files, hash checking, build constraints, editable or not."""
    found = set()
    for command in commands:
        words = shlex.split(command.replace("$(call UV_PIP,$(VENV))", "uv pip install"))
        for i, word in enumerate(words):
            if word in ("-r", "--build-constraints"):
                found.add(f"{word} {words[i + 1]}")
            elif word in ("--require-hashes", "--no-deps"):
                found.add(word)
    return found


def test_the_image_installs_what_make_install_runtime_installs() -> None:
    build, _ = _stages()
    docker_runs = [args for word, args in build if word == "RUN"]
    make = _recipe("$(VENV)/.runtime") + _recipe("$(UV)")
    assert _install_options(docker_runs) == _install_options(make)
    assert "-r requirements/runtime.txt" in _install_options(docker_runs)
    assert "-r requirements/dev.txt" not in _install_options(docker_runs)
    # The same uv settings: never download a Python, ignore local configuration.
    docker_env = " ".join(args for word, args in build if word == "ENV")
    makefile = (ROOT / "Makefile").read_text()
    for setting in ("UV_PYTHON_DOWNLOADS", "UV_NO_CONFIG"):
        value = re.search(rf"export {setting} := (\S+)", makefile)
        assert value is not None, setting
        assert f"{setting}={value.group(1)}" in docker_env, setting


def test_the_image_runs_as_a_user_serves_its_port_and_checks_health() -> None:
    _, final = _stages()
    words = dict(final)
    assert words["USER"] == "timeline"
    cmd = json.loads(words["CMD"])
    assert cmd[:2] == ["timeline", "serve"]
    parsed = serve.make_context("serve", cmd[2:]).params  # the options parse as the command would
    assert parsed["host"] == "0.0.0.0"
    assert str(parsed["port"]) == words["EXPOSE"]
    health = words["HEALTHCHECK"]
    assert f"http://127.0.0.1:{parsed['port']}/health" in health
    assert "/health" in json.loads((ROOT / "openapi" / "openapi.json").read_text())["paths"]


def test_compose_wires_postgresql_to_the_image() -> None:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    db, app = compose["services"]["db"], compose["services"]["app"]
    assert app["build"] == "."
    assert app["depends_on"] == {"db": {"condition": "service_healthy"}}
    url = app["environment"]["TIMELINE_DATABASE_URL"]
    env = db["environment"]
    expected = f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@db:5432/{env['POSTGRES_DB']}"
    assert url == expected
    assert "pg_isready" in db["healthcheck"]["test"]
    _, final = _stages()
    [published] = app["ports"]
    assert published.rsplit(":", 1)[1] == dict(final)["EXPOSE"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replay_build(tmp_path: Path) -> Path:
    """Run the build stage's instructions with /opt under ``tmp_path``; return the installed venv."""
    opt = tmp_path / "opt"
    workdir = tmp_path
    # `python` is the interpreter without this test's virtualenv, as the image's is.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(getattr(sys, "_base_executable", sys.executable))
    # The machine's settings (certificates, pip's configuration) stay; the test's virtualenv goes.
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = f"{bin_dir}:/usr/bin:/bin"
    build, _ = _stages()
    for word, written in build:
        args = written.replace("/opt/", f"{opt}/")
        if word == "ENV":
            env |= {
                k: v for k, _, v in (pair.partition("=") for pair in shlex.split(args)) if k != "UV_NO_CACHE"
            }
        elif word == "WORKDIR":
            workdir = tmp_path / args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif word == "COPY":
            *sources, destination = shlex.split(args)
            for source in sources:
                _copy(ROOT / source, workdir / destination, into=destination.endswith("/"))
        elif word == "RUN":
            done = subprocess.run(["sh", "-c", args], cwd=workdir, env=env, capture_output=True, check=False)
            assert done.returncode == 0, (args, done.stdout.decode(), done.stderr.decode())
        else:
            raise AssertionError(f"the replay does not know {word}")
    # The wheel carries the migrations and the fixtures: nothing may be read from the copied sources.
    shutil.rmtree(workdir)
    return opt / "timeline"


def _copy(origin: Path, target: Path, *, into: bool) -> None:
    destination = target / origin.name if into else target
    destination.parent.mkdir(parents=True, exist_ok=True)
    if origin.is_dir():
        shutil.copytree(origin, destination, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy(origin, destination)


def test_the_image_build_replayed_here_serves_and_passes_its_health_check(tmp_path: Path) -> None:
    assert UV.exists(), "make install puts uv in .cache/tools"
    venv = _replay_build(tmp_path)
    data = tmp_path / "var-lib-timeline"
    data.mkdir()
    port = _free_port()
    _, final = _stages()
    words = dict(final)
    cmd = [str(venv / "bin" / "timeline"), *json.loads(words["CMD"])[1:]]
    cmd[cmd.index("--port") + 1] = str(port)
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "TIMELINE_DATABASE_URL": f"sqlite:///{data}/t.db"}
    health = json.loads(words["HEALTHCHECK"].partition("CMD ")[2])
    health = [str(venv / "bin" / "python"), *(p.replace(":8000/", f":{port}/") for p in health[1:])]
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(cmd, cwd=data, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while subprocess.run(health, capture_output=True, check=False).returncode != 0:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
        finally:
            server.terminate()
            server.wait(timeout=30)
    said = log_path.read_text()
    assert "fixtures/000_16630df2654ec508.yaml: imported, 29 events (positions 1-29)" in said
    assert f"serving sqlite:///{data}/t.db on http://127.0.0.1:{port}" in said
