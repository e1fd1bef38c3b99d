"""HTTP conventions applied to every route, before routing: HEAD answers as GET does, without the body; and
CORS in two tiers, public reads for any origin (no credentials), everything else for configured origins only.

A TimelineJS page on any site can thus load an export with no configuration, while a page that writes must be
on an origin listed in TIMELINE_CORS_ORIGINS ("*" lists every origin).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from litestar.types import (
        ASGIApp,
        HTTPDisconnectEvent,
        HTTPScope,
        Message,
        Receive,
        ReceiveMessage,
        Scope,
        Send,
    )

READS = frozenset({"GET", "HEAD"})
_ALL_METHODS = b"GET, HEAD, POST, PATCH, OPTIONS"
_READ_METHODS = b"GET, HEAD, OPTIONS"
# What a page may send: a reader's validators and stream position; a writer's token and preconditions too.
_READ_HEADERS = b"Accept, Accept-Language, Content-Language, If-None-Match, If-Modified-Since, Last-Event-ID"
_ALL_HEADERS = _READ_HEADERS + b", Authorization, Content-Type, If-Match, Idempotency-Key, X-Request-ID"
_EXPOSED = b"ETag, Last-Modified, Idempotent-Replayed, X-Request-ID, Location"
_MAX_AGE = b"600"


class Policy(msgspec.Struct, frozen=True):
    """Which origins may do what."""

    origins: frozenset[str]
    any_origin: bool
    public_reads: bool

    @classmethod
    def of(cls, cors_origins: str, public_reads: bool) -> Policy:
        """From TIMELINE_CORS_ORIGINS (comma-separated) and TIMELINE_PUBLIC_READS."""
        listed = {o.strip() for o in cors_origins.split(",") if o.strip()}
        return cls(frozenset(listed - {"*"}), "*" in listed, public_reads)

    def trusted(self, origin: str) -> bool:
        """Whether pages on ``origin`` may write (and read with a token)."""
        return self.any_origin or origin in self.origins


def header(scope: HTTPScope | Scope, name: bytes) -> str | None:
    """The first value of a request header (``name`` in lower case, as ASGI servers give names)."""
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def handle(policy: Policy, app: ASGIApp, scope: HTTPScope, receive: Receive, send: Send) -> None:
    """Answer CORS preflights, add CORS headers, and run HEAD as GET without a body."""
    origin = header(scope, b"origin")
    asked = header(scope, b"access-control-request-method")
    if origin is not None and scope["method"] == "OPTIONS" and asked is not None:
        await _preflight(policy, origin, asked.upper(), send)
        return
    extra: list[tuple[bytes, bytes]] = []
    if origin is not None:
        if policy.trusted(origin):
            extra = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        elif policy.public_reads and scope["method"] in READS:
            extra = [(b"access-control-allow-origin", b"*")]
        if extra:
            extra.append((b"access-control-expose-headers", _EXPOSED))
    head = scope["method"] == "HEAD"
    if head:
        scope = {**scope, "method": "GET"}
    started = False

    async def sending(message: Message) -> None:
        nonlocal started
        if message["type"] == "http.response.start":
            started = True
            if extra:
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)
            if head:  # the headers GET would send, then an empty body; the GET's own body is dropped
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        elif not head:
            await send(message)

    async def receiving() -> ReceiveMessage:
        # Once a HEAD is answered the client is gone as far as the handler is concerned: a stream ends.
        if head and started:
            gone: HTTPDisconnectEvent = {"type": "http.disconnect"}
            return gone
        return await receive()

    await app(scope, receiving, sending)


async def _preflight(policy: Policy, origin: str, asked: str, send: Send) -> None:
    if policy.trusted(origin):
        headers = [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"vary", b"Origin"),
            (b"access-control-allow-methods", _ALL_METHODS),
            (b"access-control-allow-headers", _ALL_HEADERS),
        ]
    elif policy.public_reads and asked in READS:
        headers = [
            (b"access-control-allow-origin", b"*"),
            (b"access-control-allow-methods", _READ_METHODS),
            (b"access-control-allow-headers", _READ_HEADERS),
        ]
    else:
        body = msgspec.json.encode(
            {
                "type": "about:blank",
                "title": "Forbidden",
                "status": 403,
                "detail": f"pages on {origin} may only read (GET, HEAD) public data; list the origin in "
                "TIMELINE_CORS_ORIGINS to let it " + asked,
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [*headers, (b"access-control-max-age", _MAX_AGE)],
        }
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})
