"""Responses of the read routes, kept by (request, views position) and served without a query.

Every view is a function of the log position, so a response built at position P is the right answer to the
same request for as long as the views stay at P. Each request asks the clock where the views stand (one
cheap lookup, shared by concurrent requests on PostgreSQL); a hit is sent as stored, a conditional request
that is still current gets 304, and a miss builds the body in one read transaction that also reads the
position it reflects, so the ETag never names a position other than the body's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from email.utils import formatdate, parsedate_to_datetime
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response
from litestar.status_codes import HTTP_304_NOT_MODIFIED
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.api.schemas import ResponseCacheOut
from timeline.store import clock, views
from timeline.store.database import Database

T = TypeVar("T")
Build = Callable[[AsyncConnection], Awaitable[tuple[T, dict[str, str]]]]

_log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


class _Entry(msgspec.Struct, frozen=True):
    position: int
    body: bytes
    headers: dict[str, str]
    # When the views last changed as the body saw them: a rebuild changes rows but not the position.
    updated: dt.datetime | None = None

    def serves(self, position: int, updated: dt.datetime | None) -> bool:
        """Whether this answer is at least as fresh as the views at ``position``, changed at ``updated``."""
        if self.position != position:
            return self.position > position  # built after that reading was taken
        if updated is None or self.updated is None:
            return updated is self.updated
        return self.updated >= updated


class ResponseCache:
    """Encoded bodies by request key, each valid at one views position; least recently used go first
    once they hold more than ``max_bytes``."""

    def __init__(self, clock: clock.Clock, max_bytes: int) -> None:
        self.clock = clock
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        # Builds under way, so a burst of identical requests builds the answer once.
        self.flights: dict[str, asyncio.Future[_Entry | None]] = {}
        self.hits = 0
        self.misses = 0
        self.clock_failing = False

    def get(self, key: str, position: int, updated: dt.datetime | None = None) -> _Entry | None:
        """The entry for ``key`` if it is at least as fresh as the views at ``position`` (see ``serves``)."""
        entry = self._entries.get(key)
        if entry is None or not entry.serves(position, updated):
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: _Entry) -> None:
        """Keep ``entry``, evicting the least recently used beyond the size limit."""
        if len(entry.body) > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._entries[key] = entry
        self._bytes += len(entry.body)
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    @property
    def size(self) -> tuple[int, int]:
        """Entries and bytes held."""
        return len(self._entries), self._bytes


def stats(request: Request[Any, Any, Any]) -> ResponseCacheOut | None:
    """What the app's cache holds and how often it answered, for /health."""
    cache: ResponseCache | None = request.app.state.get("response_cache")
    if cache is None:
        return None
    entries, held = cache.size
    return ResponseCacheOut(
        entries=entries, bytes=held, limit_bytes=cache.max_bytes, hits=cache.hits, misses=cache.misses
    )


def _key(request: Request[Any, Any, Any]) -> str:
    # Sorted, so ?a=1&b=2 and ?b=2&a=1 share an entry.
    query = sorted(request.query_params.multi_items())
    return f"{request.url.path}?{query}"


def validators(position: int, updated: Any) -> dict[str, str]:
    """ETag and Last-Modified of the views at ``position``, last changed at ``updated``."""
    headers = {"ETag": f'W/"{position}"', "Cache-Control": "no-cache"}
    if updated is not None:
        headers["Last-Modified"] = formatdate(updated.timestamp(), usegmt=True)
    return headers


def still_current(request: Request[Any, Any, Any], headers: dict[str, str]) -> bool:
    """Whether the request's If-None-Match (or, without it, If-Modified-Since) matches ``headers``."""
    if "ETag" not in headers and "Last-Modified" not in headers:
        return False
    match = request.headers.get("if-none-match")
    if match is not None:
        return match.strip() == "*" or headers.get("ETag") in [m.strip() for m in match.split(",")]
    since, modified = request.headers.get("if-modified-since"), headers.get("Last-Modified")
    if since is None or modified is None:
        return False
    try:
        return parsedate_to_datetime(modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


async def respond(
    request: Request[Any, Any, Any], db: Database, build: Build[T], *, conditional: bool = True
) -> Response[T]:
    """The response ``build`` makes (a body and extra headers), from the cache while the views have not
    moved. With ``conditional`` the body carries the views' ETag and Last-Modified; whatever validators it
    carries, a request that already holds it gets 304."""
    cache: ResponseCache | None = request.app.state.get("response_cache")
    if cache is None or cache.max_bytes <= 0:
        return _send(request, await _build(db, build, conditional))
    key = _key(request)
    try:
        position, updated = await cache.clock.now()
    except Exception:  # a clock that cannot answer only costs the cache
        if not cache.clock_failing:  # once per outage, not once per request
            _log.warning("views clock unavailable; answering without the response cache", exc_info=True)
            cache.clock_failing = True
        return _send(request, await _build(db, build, conditional))
    if cache.clock_failing:
        _log.warning("views clock answers again; the response cache is back")
        cache.clock_failing = False
    if conditional and still_current(request, current := validators(position, updated)):
        return _not_modified(current)
    entry = cache.get(key, position, updated)
    if entry is None and (flight := cache.flights.get(key)) is not None:
        # The same request is being built: its answer will do if its snapshot is no older than ours.
        entry = await asyncio.shield(flight)
        entry = entry if entry is not None and entry.serves(position, updated) else None
    if entry is not None:
        cache.hits += 1
        return _send(request, entry)
    cache.misses += 1
    flight = cache.flights[key] = asyncio.get_running_loop().create_future()
    try:
        entry = await _build(db, build, conditional)
    except BaseException:
        flight.set_result(None)  # each waiter builds its own answer (or error) instead
        raise
    else:
        flight.set_result(entry)
        cache.put(key, entry)
    finally:
        if cache.flights.get(key) is flight:
            del cache.flights[key]
    return _send(request, entry)


async def _build(db: Database, build: Build[T], conditional: bool) -> _Entry:
    # The position is read in the body's own snapshot, so the ETag names exactly what the body shows.
    async with db.read() as conn:
        position, updated = await views.freshness(conn)
        body, extra = await build(conn)
    headers = {**(validators(position, updated) if conditional else {}), **extra}
    return _Entry(position, _encoder.encode(body), headers, updated)


def _send(request: Request[Any, Any, Any], entry: _Entry) -> Response[Any]:
    if still_current(request, entry.headers):
        return _not_modified(entry.headers)
    # The body is already JSON; Litestar sends bytes as they are.
    return Response(entry.body, media_type="application/json", headers=entry.headers)


def _not_modified(headers: dict[str, str]) -> Response[Any]:
    return Response(None, status_code=HTTP_304_NOT_MODIFIED, headers=headers)
