"""The API's documentation page, /schema: Redoc, served by the app itself (vendored in static/redoc/, see
its README), so the page renders with no network: no CDN script, no web fonts, no remote favicon."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from typing import Any

from litestar import Request, Response, get
from litestar.openapi.plugins import RedocRenderPlugin
from litestar.status_codes import HTTP_304_NOT_MODIFIED

_REDOC = (files("timeline.api") / "static" / "redoc" / "redoc.standalone.js").read_bytes()
_ETAG = f'"{hashlib.sha256(_REDOC).hexdigest()[:16]}"'
ASSET = "/schema/assets/redoc.standalone.js"

# Redoc's bundle names one remote image (its "API docs by Redocly" logo); the page's policy keeps the
# browser from even asking for it, or for anything else not served here.
_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' blob:; worker-src 'self' blob:; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'"
)


class _Redoc(RedocRenderPlugin):
    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        page = super().render(request, openapi_schema)
        meta = f'<meta http-equiv="Content-Security-Policy" content="{_POLICY}">'
        return page.replace(b"<head>", b"<head>" + meta.encode(), 1)


# The page at /schema (and /schema/redoc), with the spec inlined.
RENDER = _Redoc(js_url=ASSET, google_fonts=False, favicon="", path=["/", "/redoc"])


@get(ASSET, operation_id="getRedoc", include_in_schema=False)
async def redoc(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Redoc's standalone bundle; revalidated by ETag, since a new release of the app may change it."""
    headers = {"ETag": _ETAG, "Cache-Control": "public, max-age=3600"}
    if request.headers.get("if-none-match") == _ETAG:
        return Response(b"", status_code=HTTP_304_NOT_MODIFIED, headers=headers)
    return Response(_REDOC, media_type="text/javascript", headers=headers)  # Litestar adds the charset


ROUTES = [redoc]
