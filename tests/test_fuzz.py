"""Property-based testing of the HTTP API against its committed OpenAPI document (schemathesis): every
operation, called with generated parameters and bodies by read, write and admin tokens on a served process,
answers no 5xx and nothing the document does not describe. Examples per operation are bounded (FUZZ_EXAMPLES)
so the run stays within a couple of minutes on each database."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import ROOT
from .test_processes import _cli, servers

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "8"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# The event stream never ends by design; its parameters are the log's (fuzzed through GET /events) and its
# errors come before the stream starts (tests/test_bad_input.py, tests/test_live.py).
ENDLESS = {"streamEvents"}
ADMIN_ONLY = {"createImport", "rebuildViews"}


def _scopes(operation_id: str, method: str) -> list[str]:
    """The tokens an operation is called with: the scope it needs, and one without it (403s are checked)."""
    if operation_id in ADMIN_ONLY:
        return ["admin", "write"]
    if method in ("POST", "PATCH"):
        return ["write", "read"]
    return ["read"]


def _check(operation: Any, base: str, headers: dict[str, str]) -> Any:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def check(case: Any) -> None:
        case.headers = {**(case.headers or {}), **headers}
        case.call_and_validate(base_url=base, checks=CHECKS, timeout=60)

    return check


def _fuzz(base: str, secrets: dict[str, str]) -> list[str]:
    schema = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json")
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        operation_id = operation.definition.raw.get("operationId", operation.label)
        if operation_id in ENDLESS:
            continue
        for scope in _scopes(operation_id, operation.method.upper()):
            try:
                # urllib3 refuses to inflate brotli from the Brotli release the runtime pins (its bomb guard).
                headers = {"Authorization": f"Bearer {secrets[scope]}", "Accept-Encoding": "gzip"}
                _check(operation, base, headers)()
            except Exception as exc:
                failures.append(f"{operation.label} as {scope}: {str(exc)[:2000]}")
    return failures


async def test_every_operation_holds_to_the_document(database_url: str, tmp_path: Path) -> None:
    secrets = {
        scope: await _cli(database_url, "tokens", "create", f"fuzz-{scope}", "--scope", scope)
        for scope in ("read", "write", "admin")
    }
    with servers(database_url, tmp_path, 1) as [server]:
        await server.ready()
        failures = await asyncio.to_thread(_fuzz, server.base, secrets)
    assert not failures, "\n\n".join(failures)
