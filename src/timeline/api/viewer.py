"""The built-in viewer: one self-contained page (no CDN, nothing fetched from elsewhere) over the API."""

from __future__ import annotations

from importlib.resources import files
from typing import Any
from urllib.parse import urlencode

from litestar import MediaType, Request, Response, get
from litestar.response import Redirect

from timeline.api.auth import requires
from timeline.api.common import Db, problems
from timeline.store import queries

_PAGE = (files("timeline.api") / "static" / "viewer.html").read_bytes()


@get(
    "/ui",
    operation_id="viewer",
    tags=["viewer"],
    middleware=[requires("read")],
    media_type=MediaType.HTML,
    responses=problems(401, 403),
)
async def viewer(db: Db, request: Request[Any, Any, Any]) -> Response[bytes] | Redirect:
    """A page to read a subject's timeline and a chart of who estimated what and when, at any moment.
    Deep links: `?subject=&as_of=&known_at=`; with no subject it redirects to the one with most figures."""
    if "subject" not in request.query_params:
        async with db.read() as conn:
            subject = await queries.subject_with_most_figures(conn)
        if subject is not None:
            # The rest of the link (as_of, known_at) goes along.
            return Redirect(f"/ui?{urlencode([('subject', subject), *request.query_params.multi_items()])}")
    return Response(_PAGE, media_type=MediaType.HTML, headers={"Cache-Control": "no-cache"})


@get("/", operation_id="home", tags=["viewer"], include_in_schema=False)
async def home(request: Request[Any, Any, Any]) -> Redirect:
    """The viewer is the home page; a link's query (subject, as_of, known_at) survives the redirect."""
    query = request.url.query
    return Redirect(f"/ui?{query}" if query else "/ui")


ROUTES = [viewer, home]
