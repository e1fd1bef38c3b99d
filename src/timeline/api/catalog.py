"""Read routes for what is registered: subjects, sources (with the claims each made) and documents."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from litestar import Request, Response, get
from litestar.params import FromPath, QueryParameter
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.api import cache, present
from timeline.api.catalog_schemas import (
    DocumentsOut,
    SourceActivityOut,
    SourceDetailOut,
    SourcesOut,
    SubjectsOut,
)
from timeline.api.common import Db, problems
from timeline.api.reads import READ, Cursor, Limit
from timeline.app import queries
from timeline.domain.events import SourceRegistered
from timeline.domain.values import POSITION_MAX


@get(
    "/subjects",
    operation_id="listSubjects",
    tags=["subjects"],
    middleware=READ,
    responses=problems(400, 401, 403),
)
async def list_subjects(
    db: Db, request: Request[Any, Any, Any], limit: Limit = 100, cursor: Cursor = None
) -> Response[SubjectsOut]:
    """Every subject, by id, a page at a time."""

    async def build(conn: AsyncConnection) -> tuple[SubjectsOut, dict[str, str]]:
        found = await queries.registered(conn, "subject")
        page, nxt = queries.page(sorted(found), cursor, limit)
        return SubjectsOut(
            subjects=[present.subject_out(found[i]) for i in page],
            next=f"/subjects?limit={limit}&cursor={nxt}" if nxt else None,
        ), {}

    return await cache.respond(request, db, build)


@get(
    "/sources",
    operation_id="listSources",
    tags=["sources"],
    middleware=READ,
    responses=problems(400, 401, 403),
)
async def list_sources(
    db: Db,
    request: Request[Any, Any, Any],
    limit: Limit = 100,
    cursor: Cursor = None,
    kind: Annotated[str | None, QueryParameter(description="Only sources of this kind")] = None,
    country: Annotated[str | None, QueryParameter(description="Only sources of this country code")] = None,
) -> Response[SourcesOut]:
    """Every source, by id, optionally of one kind or country, a page at a time."""

    async def build(conn: AsyncConnection) -> tuple[SourcesOut, dict[str, str]]:
        found = {
            ident: r
            for ident, r in (await queries.registered(conn, "source")).items()
            if isinstance(r, SourceRegistered)
            and (kind is None or r.kind == kind)
            and (country is None or r.country == country)
        }
        page, nxt = queries.page(sorted(found), cursor, limit)
        params = {k: v for k, v in (("limit", str(limit)), ("kind", kind), ("country", country)) if v}
        return SourcesOut(
            sources=[present.source_out(found[i]) for i in page],
            next=f"/sources?{urlencode({**params, 'cursor': nxt})}" if nxt else None,
        ), {}

    return await cache.respond(request, db, build)


@get(
    "/sources/{source_id:str}",
    operation_id="getSource",
    tags=["sources"],
    middleware=READ,
    responses=problems(400, 401, 403, 404),
)
async def source_detail(
    db: Db,
    source_id: FromPath[str],
    limit: Limit = 100,
    cursor: Annotated[
        int | None,
        QueryParameter(ge=0, le=POSITION_MAX, description="The 'next' cursor of the previous page"),
    ] = None,
) -> SourceDetailOut:
    """A source, and the claims it made in the order they were recorded, each with what became of it."""
    found = await queries.read(db, lambda conn: queries.source_detail(conn, source_id, cursor or 0, limit))
    nxt = found.next_cursor
    return SourceDetailOut(
        source=present.source_out(found.source),
        claims=[present.claim_summary(r) for r in found.claims],
        next=f"/sources/{source_id}?limit={limit}&cursor={nxt}" if nxt else None,
        activity=SourceActivityOut(**found.activity) if found.activity else None,
    )


@get(
    "/documents",
    operation_id="listDocuments",
    tags=["documents"],
    middleware=READ,
    responses=problems(400, 401, 403),
)
async def list_documents(
    db: Db, request: Request[Any, Any, Any], limit: Limit = 100, cursor: Cursor = None
) -> Response[DocumentsOut]:
    """Every document, by id, a page at a time."""

    async def build(conn: AsyncConnection) -> tuple[DocumentsOut, dict[str, str]]:
        found = await queries.registered(conn, "document")
        page, nxt = queries.page(sorted(found), cursor, limit)
        return DocumentsOut(
            documents=[present.document_out(found[i]) for i in page],
            next=f"/documents?limit={limit}&cursor={nxt}" if nxt else None,
        ), {}

    return await cache.respond(request, db, build)


ROUTES = [list_subjects, list_sources, source_detail, list_documents]
