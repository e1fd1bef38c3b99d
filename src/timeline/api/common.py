"""Pieces shared by the read and write routes: the database dependency, limits, documented problems."""

from __future__ import annotations

from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from timeline.api.problems import PROBLEM_JSON
from timeline.api.schemas import Problem
from timeline.store.database import Database

Db = NamedDependency[Database]
MAX_LIMIT = 1000

_PROBLEM_DESCRIPTIONS = {
    400: "Invalid request parameters or body",
    401: "No token, an unknown token, or a revoked token",
    403: "The token lacks the scope this needs",
    404: "Unknown subject, source, document or claim",
    409: "Conflicts with what is already recorded; nothing was recorded",
    412: "If-Match does not match the current version; nothing was recorded",
    408: "The work took longer than TIMELINE_WORK_TIMEOUT_SECONDS; nothing was recorded",
    413: "Request body too large (the limit is in the answer)",
    422: "Invalid claim, fixture or reused Idempotency-Key; nothing was recorded",
    503: "The database is busy or the server is stopping (see Retry-After), or /health found a view or a "
    "projection unhealthy",
}


def problems(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem+json errors a route can answer with."""
    return {
        code: ResponseSpec(
            data_container=Problem,
            description=_PROBLEM_DESCRIPTIONS[code],
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
        for code in codes
    }


WRITE_PROBLEMS = problems(400, 401, 403, 404, 409, 412, 413, 422)
