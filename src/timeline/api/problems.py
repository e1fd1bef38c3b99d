"""Every error leaves the API as RFC 9457 problem+json, mapped here in one place."""

from __future__ import annotations

import logging
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.problem_details import (
    ProblemDetailsConfig,
    ProblemDetailsException,
    ProblemDetailsPlugin,
)
from litestar.status_codes import (
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_412_PRECONDITION_FAILED,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from timeline.api.schemas import Problem, ProblemItem
from timeline.app.errors import IdempotencyKeyReused, NotFound, PreconditionFailed, Rejected
from timeline.domain.errors import DefinitionConflict, InvalidValue, RuleViolation, UnknownReference
from timeline.domain.values import in_words
from timeline.fixtures import FixtureError
from timeline.groupcommit import Unavailable
from timeline.store.eventlog import WrongExpectedVersion

PROBLEM_JSON = "application/problem+json"
_log = logging.getLogger("timeline.api")


class BadRequest(Exception):
    """A request parameter, header or body that cannot be used, with its name (400 unless said otherwise:
    415 for a body of the wrong type, 413 for one too large)."""

    def __init__(self, parameter: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message
        self.status = status


class TimelineProblem(ProblemDetailsException):
    """A problem on its way out: the body (our ``Problem``, with ``errors``) and headers; the request's path
    becomes its ``instance``."""

    def __init__(self, problem: Problem, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail=problem.detail, status_code=problem.status, headers=headers)
        self.problem = problem

    def to_response(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The problem+json response, naming the request's path."""
        problem = msgspec.structs.replace(self.problem, instance=request.url.path)
        return Response(
            msgspec.json.encode(problem),
            status_code=problem.status,
            media_type=PROBLEM_JSON,
            headers=self.headers,
        )


class _BodyTooLarge(TimelineProblem):
    """413, stating the limit this server was configured with."""

    def to_response(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The 413 with the body limit in its detail."""
        limit = request.app.state.settings.max_body_bytes
        self.problem = msgspec.structs.replace(
            self.problem,
            detail=f"the request body is over the limit of {limit:,} bytes (TIMELINE_MAX_BODY_BYTES); "
            "nothing was read",
        )
        return super().to_response(request)


def _problem(problem: Problem, headers: dict[str, str] | None = None) -> TimelineProblem:
    return TimelineProblem(problem, headers)


def not_found(exc: NotFound) -> TimelineProblem:
    return _problem(
        Problem(title=f"Unknown {exc.kind}", status=HTTP_404_NOT_FOUND, detail=str(exc)),
    )


def bad_request(exc: BadRequest) -> TimelineProblem:
    return _problem(
        Problem(
            title=_BAD_REQUEST_TITLES.get(exc.status, "Invalid request parameter"),
            status=exc.status,
            detail=f"{exc.parameter}: {exc.message}",
            errors=[ProblemItem(path=exc.parameter, message=exc.message)],
        ),
    )


_BAD_REQUEST_TITLES = {408: "Request Timeout", 413: "Request body too large", 415: "Unsupported Media Type"}


def invalid_value(exc: InvalidValue) -> TimelineProblem:
    # Raised outside a write's rules (a parameter or header read by a domain rule): the field is its name.
    return bad_request(BadRequest(exc.field or "request", exc.message))


def too_deep(exc: RecursionError) -> TimelineProblem:
    if "deserializing" not in str(exc):
        return internal_error(exc)
    return bad_request(BadRequest("body", "JSON nested too deeply to read; nothing was recorded"))


def fixture_error(exc: FixtureError) -> TimelineProblem:
    return _problem(
        Problem(
            title="Invalid fixture",
            status=HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"nothing was imported: {exc}",
            errors=[
                ProblemItem(file=e.file, path=e.path or None, line=e.line, message=e.message) for e in exc.all
            ],
        ),
    )


def rejected(exc: Rejected) -> TimelineProblem:
    error = exc.error
    if (
        isinstance(error, UnknownReference)
        and exc.origin == ""
        and error.kind in ("claim", "subject", "source", "document")
        and exc.field in ("claim", None)
    ):
        # The resource named by the URL does not exist (a body naming an unknown source is a 422).
        return _problem(
            Problem(title=f"Unknown {error.kind}", status=HTTP_404_NOT_FOUND, detail=error.message)
        )
    conflict = isinstance(error, DefinitionConflict | RuleViolation)
    return _problem(
        Problem(
            title="Conflicts with what is recorded" if conflict else "Invalid claim",
            status=HTTP_409_CONFLICT if conflict else HTTP_422_UNPROCESSABLE_ENTITY,
            detail=f"nothing was recorded: {exc}",
            errors=[ProblemItem(path=exc.place, message=exc.message)],
        ),
    )


def precondition_failed(exc: PreconditionFailed) -> TimelineProblem:
    return _problem(
        Problem(title="Precondition Failed", status=HTTP_412_PRECONDITION_FAILED, detail=str(exc)),
        headers={"ETag": f'"{exc.actual}"'},
    )


def key_reused(exc: IdempotencyKeyReused) -> TimelineProblem:
    return _problem(
        Problem(title="Idempotency-Key reused", status=HTTP_422_UNPROCESSABLE_ENTITY, detail=str(exc)),
    )


def wrong_version(exc: WrongExpectedVersion) -> TimelineProblem:
    return _problem(Problem(title="Version conflict", status=HTTP_409_CONFLICT, detail=str(exc)))


def unavailable(exc: Unavailable) -> TimelineProblem:
    return _problem(
        Problem(title="Service Unavailable", status=HTTP_503_SERVICE_UNAVAILABLE, detail=str(exc)),
        headers={"Retry-After": "5"},
    )


def http_error(exc: HTTPException) -> TimelineProblem:
    errors = None
    if isinstance(exc, ValidationException) and isinstance(exc.extra, list):
        errors = [
            ProblemItem(
                path=str(item.get("key")) if item.get("key") else None,
                message=in_words(str(item.get("message", ""))),
            )
            for item in exc.extra
            if isinstance(item, dict)
        ]
        if errors:
            detail = "; ".join(f"{e.path}: {e.message}" if e.path else e.message for e in errors)
            return _problem(
                Problem(title="Invalid request", status=exc.status_code, detail=detail, errors=errors),
            )
    problem = Problem(title=_title(exc.status_code), status=exc.status_code, detail=exc.detail)
    if exc.status_code == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        return _BodyTooLarge(problem, exc.headers)
    return _problem(problem, headers=exc.headers)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def internal_error(exc: Exception) -> TimelineProblem:
    _log.exception("unhandled error", exc_info=exc)
    return _problem(
        Problem(
            title="Internal Server Error",
            status=HTTP_500_INTERNAL_SERVER_ERROR,
            detail="the server failed to handle this request; nothing was recorded",
        ),
    )


# The one table from exceptions to problems: add an entry (exception type -> function returning a
# TimelineProblem) for a new kind of error. The most specific class in an exception's MRO wins.
PROBLEMS: dict[type[Any], Callable[[Any], TimelineProblem]] = {
    NotFound: not_found,
    BadRequest: bad_request,
    InvalidValue: invalid_value,
    RecursionError: too_deep,
    FixtureError: fixture_error,
    Rejected: rejected,
    WrongExpectedVersion: wrong_version,
    PreconditionFailed: precondition_failed,
    IdempotencyKeyReused: key_reused,
    Unavailable: unavailable,
    HTTPException: http_error,
    Exception: internal_error,
}


def plugin(*more: dict[type[Any], Callable[[Any], TimelineProblem]]) -> ProblemDetailsPlugin:
    """Litestar's problem-details plugin, converting through ``PROBLEMS`` and then ``more`` tables."""
    table = dict(PROBLEMS)
    for extra in more:
        table.update(extra)
    return ProblemDetailsPlugin(ProblemDetailsConfig(exception_to_problem_detail_map=table))
