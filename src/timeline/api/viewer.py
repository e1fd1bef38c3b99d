"""The built-in viewer: one self-contained page (no CDN, nothing fetched from elsewhere) over the API."""

from __future__ import annotations

from importlib.resources import files

from litestar import MediaType, Response, get
from litestar.response import Redirect

from timeline.api.auth import requires
from timeline.api.common import problems

_PAGE = (files("timeline.api") / "static" / "viewer.html").read_bytes()


@get(
    "/ui",
    operation_id="viewer",
    tags=["viewer"],
    guards=[requires("read")],
    media_type=MediaType.HTML,
    responses=problems(401, 403),
)
async def viewer() -> Response[bytes]:
    """A page to read a subject's timeline and a chart of who estimated what and when, at any moment."""
    return Response(_PAGE, media_type=MediaType.HTML, headers={"Cache-Control": "no-cache"})


@get("/", operation_id="home", tags=["viewer"], include_in_schema=False)
async def home() -> Redirect:
    """The viewer is the home page."""
    return Redirect("/ui")


ROUTES = [viewer, home]
