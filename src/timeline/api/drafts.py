"""POST /drafts: a fixture proposed from an article's text, for an editor to review (never imported)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Request, Response, post
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_408_REQUEST_TIMEOUT

from timeline import drafting
from timeline.api.auth import requires
from timeline.api.common import Db, problems
from timeline.api.inputs import draft_inputs
from timeline.api.problems import BadRequest
from timeline.api.settings import Settings
from timeline.app import queries


@dataclass
class _DraftOperation(Operation):
    """Documents the raw article body, read by the handler itself."""

    def __post_init__(self) -> None:
        text = OpenAPIMediaType(schema=Schema(type=OpenAPIType.STRING))
        self.request_body = RequestBody(
            content={"text/plain": text, "text/html": text},
            description="The article: plain text, or HTML (only its <article> body, or body, is read).",
            required=True,
        )


@post(
    "/drafts",
    operation_id="draftFixture",
    tags=["log"],
    status_code=HTTP_200_OK,
    middleware=[requires("write")],
    operation_class=_DraftOperation,
    media_type="application/yaml",
    responses=problems(400, 401, 403, 408, 413),
)
async def create_draft(
    db: Db,
    request: Request[Any, Any, Any],
    date: Annotated[
        str | None,
        QueryParameter(description="The article's date, YYYY-MM-DD (or a first line 'date YYYY-MM-DD')"),
    ] = None,
    subject: Annotated[str | None, QueryParameter(description="The subject's id, if registered")] = None,
    title: Annotated[str | None, QueryParameter(description="The article's title")] = None,
) -> Response[str]:
    """Propose a fixture (YAML) from an article: attributed claims with figures and modality, denials,
    confirmations, evidence and dates, each with its sentence and span and marked for review. Nothing is
    recorded; import the draft once it is checked."""
    settings: Settings = request.app.state.settings
    raw, given = draft_inputs(await request.body(), date, max_bytes=settings.draft_max_bytes)
    try:
        published, raw = drafting.article_date(raw, given.isoformat() if given else None)
    except ValueError:
        raise BadRequest("body", "the article's first line 'date ...' is not a date YYYY-MM-DD") from None
    if published is None:
        raise BadRequest("date", "no date in the article; give ?date=YYYY-MM-DD")
    known_sources, known_claims = await queries.read(db, queries.drafting_context)

    def work() -> str:
        fixture = drafting.draft(
            raw,
            published=published,
            title=title,
            subject=subject,
            known_sources=known_sources,
            known_claims=known_claims,
        )
        return drafting.to_yaml(fixture)

    # Drafting is CPU work: in a worker thread, so other requests are served meanwhile.
    try:
        text = await asyncio.wait_for(asyncio.to_thread(work), timeout=settings.work_timeout_seconds)
    except TimeoutError:
        raise BadRequest(
            "body",
            f"drafting took over {settings.work_timeout_seconds:g} s (TIMELINE_WORK_TIMEOUT_SECONDS); "
            "send a shorter article",
            status=HTTP_408_REQUEST_TIMEOUT,
        ) from None
    return Response(text, media_type="application/yaml")


ROUTES = [create_draft]
