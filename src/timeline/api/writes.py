"""Write routes: every event type over HTTP, with If-Match, Idempotency-Key and token scopes.

Each route decodes its body (a strict Struct) into a proposed event and hands it to ``_write``, which
calls the command (``app.commands.record``: one unit of work with the idempotency record, so a request is
recorded entirely or not at all) and encodes its outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, patch, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_408_REQUEST_TIMEOUT

from timeline.api import present
from timeline.api.auth import principal, requires
from timeline.api.common import WRITE_PROBLEMS, Db, problems
from timeline.api.definitions import (
    DocumentIn,
    DocumentPatch,
    SourceIn,
    SourcePatch,
    SubjectIn,
    SubjectPatch,
)
from timeline.api.inputs import (
    ClaimIn,
    ConfirmationIn,
    CorrectionIn,
    DenialIn,
    DenialWithdrawalIn,
    EvidenceIn,
    RetractionIn,
    RevisionIn,
    StatementIn,
    idempotency_key,
    strict_json_body,
)
from timeline.api.problems import BadRequest
from timeline.api.schemas import ImportOut, RebuildOut, WriteOut
from timeline.api.settings import Settings
from timeline.app import commands, maintenance
from timeline.app.imports import LoadedFixture, TooSlow, import_fixtures_apart
from timeline.domain.events import DomainEvent
from timeline.store.database import Database

WRITE = [requires("write")]
ADMIN = [requires("admin")]
_CREATED = ResponseSpec(data_container=WriteOut, description="Recorded", generate_examples=False)
_UNCHANGED = ResponseSpec(
    data_container=WriteOut, description="Already recorded: nothing was appended", generate_examples=False
)
_ETAG = re.compile(r'^(?:W/)?"?(\d+)"?$')
_encoder = msgspec.json.Encoder()


def _if_match(request: Request[Any, Any, Any]) -> int | None:
    raw = request.headers.get("if-match")
    if raw is None or raw.strip() == "*":
        return None
    match = _ETAG.match(raw.strip())
    if match is None:
        raise BadRequest("If-Match", f'expected an ETag from a GET such as "3", got {raw!r}')
    return int(match.group(1))


def _answer(outcome: commands.Outcome) -> tuple[int, bytes]:
    events = [present.event_out(e) for e in outcome.appended]
    body = _encoder.encode(WriteOut(stream_id=outcome.stream_id, version=outcome.version, events=events))
    return (HTTP_201_CREATED if outcome.appended else HTTP_200_OK), body


async def _write(
    request: Request[Any, Any, Any], db: Database, build: Callable[[], DomainEvent]
) -> Response[bytes]:
    key = idempotency_key(request)
    expected = _if_match(request)
    body = await request.body()
    # What request.url.path is, without building the whole URL (2.7% of a write server's CPU).
    path = request.scope.get("root_path", "") + request.scope["path"]
    caller = commands.Caller(
        recorded_by=principal(request).name,
        label=f"{request.method} {path}",
        request_id=request.headers.get("x-request-id") or uuid.uuid4().hex,
        idempotency_key=key,
        fingerprint=hashlib.sha256(b"\n".join([request.method.encode(), path.encode(), body])).hexdigest(),
    )
    reply = await commands.record(
        request.app.state.committer, build, caller, _answer, expected_version=expected
    )
    if reply.outcome is not None:
        headers = {"ETag": f'"{reply.outcome.version}"'}
    else:
        version = msgspec.json.decode(reply.body, type=WriteOut).version
        headers = {"ETag": f'"{version}"', "Idempotent-Replayed": "true"}
    return Response(reply.body, status_code=reply.status_code, media_type="application/json", headers=headers)


def _route(
    path: str, operation_id: str, tag: str, method: Callable[..., HTTPRouteHandler] = post
) -> HTTPRouteHandler:
    return method(
        path,
        operation_id=operation_id,
        tags=[tag],
        middleware=WRITE,
        before_request=strict_json_body,
        responses={**WRITE_PROBLEMS, 200: _UNCHANGED, 201: _CREATED},
        status_code=HTTP_201_CREATED,
    )


@_route("/claims", "createClaim", "claims")
async def create_claim(db: Db, request: Request[Any, Any, Any], data: JSONBody[ClaimIn]) -> Response[bytes]:
    """Record a new claim. 201 with its first event; 200 if the very same claim was recorded before."""
    return await _write(request, db, data.event)


@_route("/claims/{claim_id:str}/revisions", "reviseClaim", "claims")
async def revise_claim(
    db: Db, request: Request[Any, Any, Any], claim_id: FromPath[str], data: JSONBody[RevisionIn]
) -> Response[bytes]:
    """The claim's own source changed its figure or wording; the old one stays in the history."""
    return await _write(request, db, lambda: data.event(claim_id))


@_route("/claims/{claim_id:str}/denials", "denyClaim", "claims")
async def deny_claim(
    db: Db, request: Request[Any, Any, Any], claim_id: FromPath[str], data: JSONBody[DenialIn]
) -> Response[bytes]:
    """Another source denied the claim: it becomes disputed (or contested, if also confirmed)."""
    return await _write(request, db, lambda: data.event(claim_id))


@_route("/claims/{claim_id:str}/denial-withdrawals", "withdrawDenial", "claims")
async def withdraw_denial(
    db: Db, request: Request[Any, Any, Any], claim_id: FromPath[str], data: JSONBody[DenialWithdrawalIn]
) -> Response[bytes]:
    """A source withdrew its own earlier denial of the claim; it no longer disputes it (the denial stays)."""
    return await _write(request, db, lambda: data.event(claim_id))


@_route("/subjects/{subject_id:str}/statements", "makeStatement", "subjects")
async def make_statement(
    db: Db, request: Request[Any, Any, Any], subject_id: FromPath[str], data: JSONBody[StatementIn]
) -> Response[bytes]:
    """A source spoke on the subject without a figure, a denial or a confirmation: a timeline entry."""
    return await _write(request, db, lambda: data.event(subject_id))


@_route("/claims/{claim_id:str}/confirmations", "confirmClaim", "claims")
async def confirm_claim(
    db: Db, request: Request[Any, Any, Any], claim_id: FromPath[str], data: JSONBody[ConfirmationIn]
) -> Response[bytes]:
    """Another source corroborated the claim: it becomes confirmed (or contested, if also denied)."""
    return await _write(request, db, lambda: data.event(claim_id))


@_route("/claims/{claim_id:str}/retractions", "retractClaim", "claims")
async def retract_claim(
    db: Db, request: Request[Any, Any, Any], claim_id: FromPath[str], data: JSONBody[RetractionIn]
) -> Response[bytes]:
    """The claim's own source withdrew it: it becomes retracted and leaves the estimates."""
    return await _write(request, db, lambda: data.event(claim_id))


@_route("/claims/{claim_id:str}/evidence", "attachEvidence", "claims")
async def attach_evidence(
    db: Db, request: Request[Any, Any, Any], claim_id: FromPath[str], data: JSONBody[EvidenceIn]
) -> Response[bytes]:
    """Attach a video, image, document or geolocation bearing on the claim. Its status is unchanged."""
    return await _write(request, db, lambda: data.event(claim_id))


@_route("/claims/{claim_id:str}/corrections", "correctClaimRecord", "claims")
async def correct_claim(
    db: Db, request: Request[Any, Any, Any], claim_id: FromPath[str], data: JSONBody[CorrectionIn]
) -> Response[bytes]:
    """Fix our record of one of the claim's events (by its version in the history); views use the
    corrected values and the history keeps both."""
    return await _write(request, db, lambda: data.event(claim_id))


@_route("/subjects", "createSubject", "subjects")
async def create_subject(
    db: Db, request: Request[Any, Any, Any], data: JSONBody[SubjectIn]
) -> Response[bytes]:
    """Register a subject; the identical definition again is a no-op (200)."""
    return await _write(request, db, data.event)


@_route("/subjects/{subject_id:str}", "amendSubject", "subjects", patch)
async def amend_subject(
    db: Db, request: Request[Any, Any, Any], subject_id: FromPath[str], data: JSONBody[SubjectPatch]
) -> Response[bytes]:
    """Change a subject's name or description (recorded as an event)."""
    return await _write(request, db, lambda: data.event(subject_id))


@_route("/sources", "createSource", "sources")
async def create_source(db: Db, request: Request[Any, Any, Any], data: JSONBody[SourceIn]) -> Response[bytes]:
    """Register a source; the identical definition again is a no-op (200)."""
    return await _write(request, db, data.event)


@_route("/sources/{source_id:str}", "amendSource", "sources", patch)
async def amend_source(
    db: Db, request: Request[Any, Any, Any], source_id: FromPath[str], data: JSONBody[SourcePatch]
) -> Response[bytes]:
    """Change a source's name, kind, country, description or aliases (recorded as an event)."""
    return await _write(request, db, lambda: data.event(source_id))


@_route("/documents", "createDocument", "documents")
async def create_document(
    db: Db, request: Request[Any, Any, Any], data: JSONBody[DocumentIn]
) -> Response[bytes]:
    """Register a document; the identical definition again is a no-op (200)."""
    return await _write(request, db, data.event)


@_route("/documents/{document_id:str}", "amendDocument", "documents", patch)
async def amend_document(
    db: Db, request: Request[Any, Any, Any], document_id: FromPath[str], data: JSONBody[DocumentPatch]
) -> Response[bytes]:
    """Change a document's details (recorded as an event)."""
    return await _write(request, db, lambda: data.event(document_id))


@dataclass
class _ImportOperation(Operation):
    """Documents the raw fixture body, which the handler reads itself so YAML needs no JSON decoding."""

    def __post_init__(self) -> None:
        text = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
        self.request_body = RequestBody(
            content={"application/yaml": text, "application/json": text},
            description="One fixture, as in fixtures/*.yaml; its JSON Schema is fixtures/schema.json.",
            required=True,
        )


@post(
    "/imports",
    operation_id="createImport",
    tags=["log"],
    status_code=HTTP_200_OK,
    operation_class=_ImportOperation,
    middleware=ADMIN,
    responses=problems(400, 401, 403, 408, 409, 413, 422),
)
async def create_import(
    db: Db,
    request: Request[Any, Any, Any],
    name: Annotated[
        str, QueryParameter(description="A name for the fixture, used in errors and event metadata")
    ] = "request body",
) -> ImportOut:
    """Import one fixture (YAML or JSON body), atomically; importing it again adds nothing. Needs `admin`."""
    body = await request.body()
    settings: Settings = request.app.state.settings
    try:
        [result] = await import_fixtures_apart(
            db,
            [LoadedFixture(name, body)],
            recorded_by=principal(request).name,
            parse_timeout=settings.work_timeout_seconds,
        )
    except TooSlow:
        raise BadRequest(
            "body",
            f"reading the fixture took over {settings.work_timeout_seconds:g} s "
            "(TIMELINE_WORK_TIMEOUT_SECONDS); nothing was imported",
            status=HTTP_408_REQUEST_TIMEOUT,
        ) from None
    request.app.state.metrics.events_appended.inc(result.appended)
    return ImportOut(
        document_id=result.document_id,
        import_id=result.import_id,
        appended=result.appended,
        unchanged=result.unchanged,
        first_position=result.first_position,
        last_position=result.last_position,
    )


@post(
    "/admin/rebuild",
    operation_id="rebuildViews",
    tags=["service"],
    status_code=HTTP_200_OK,
    middleware=ADMIN,
    responses=problems(401, 403, 408),
)
async def rebuild_views(db: Db, request: Request[Any, Any, Any]) -> RebuildOut:
    """Refold every view from the log while the old ones keep serving (as `timeline rebuild` does).
    Needs `admin`."""
    settings: Settings = request.app.state.settings
    give_up = threading.Event()
    work = asyncio.ensure_future(maintenance.rebuild_views_apart(db, give_up))
    done, _ = await asyncio.wait({work}, timeout=settings.work_timeout_seconds)
    if not done:
        give_up.set()
    # Waited for even when given up, so an answer of 408 means the views are as they were.
    result = await asyncio.shield(work)
    if result is None:
        raise BadRequest(
            "rebuild",
            f"rebuilding the views took over {settings.work_timeout_seconds:g} s "
            "(TIMELINE_WORK_TIMEOUT_SECONDS); the views are as they were (`timeline rebuild` has no limit)",
            status=HTTP_408_REQUEST_TIMEOUT,
        )
    replayed, position = result
    return RebuildOut(replayed=replayed, views_position=position)


ROUTES = [
    create_claim,
    revise_claim,
    deny_claim,
    withdraw_denial,
    confirm_claim,
    retract_claim,
    attach_evidence,
    correct_claim,
    create_subject,
    amend_subject,
    make_statement,
    create_source,
    amend_source,
    create_document,
    amend_document,
    create_import,
    rebuild_views,
]
