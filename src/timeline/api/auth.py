"""Bearer-token access: route middleware that lets a request through only with the scope it needs."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.types import ASGIApp, Receive, Scope, Send
from litestar.types.composite_types import Middleware

from timeline.api.conventions import header
from timeline.api.settings import Settings
from timeline.store import tokens
from timeline.store.tokens import Token

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="timeline"'}


async def _authenticate(authorization: str, verifier: tokens.Verifier) -> Token:
    scheme, _, secret = authorization.partition(" ")
    if not authorization:
        raise NotAuthorizedException(
            "this needs a bearer token: send 'Authorization: Bearer <token>'", headers=_CHALLENGE
        )
    if scheme.lower() != "bearer" or not secret.strip():
        raise NotAuthorizedException("expected 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    token = await verifier.verify(secret.strip())
    if token is None:
        raise NotAuthorizedException("unknown token", headers=_CHALLENGE)
    if token.revoked_at is not None:
        raise NotAuthorizedException(
            f"token {token.name!r} was revoked at {token.revoked_at.isoformat()}", headers=_CHALLENGE
        )
    return token


def requires(needed: str) -> Middleware:
    """Route middleware admitting requests whose token has scope ``needed``; reads may be public
    (``Settings``).

    Middleware rather than a guard, though it checks at a guard's moment (after routing, before the body is
    read): Litestar calls each guard with a copy of the route handler, 14 µs a request in process against 2
    for this, and without that copy a write server wrote 7% more. Its refusals are answered by the app's
    exception handlers (problem+json, as a guard's were), so ``observe`` counts them by their final status."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            state = scope["litestar_app"].state
            settings: Settings = state.settings
            if needed != "read" or not settings.public_reads:
                token = await _authenticate(header(scope, b"authorization") or "", state.tokens)
                if not token.allows(needed):
                    raise PermissionDeniedException(
                        f"token {token.name!r} has scopes {', '.join(token.scopes)}; this needs {needed!r}"
                    )
                # Where a connection's ``state`` reads from, for ``principal``.
                scope.setdefault("state", {})["token"] = token
            await app(scope, receive, send)

        return guarded

    return middleware


def principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Token:
    """The token a guarded request was admitted with."""
    token = connection.state.get("token")
    assert isinstance(token, Token), "route is missing its requires(...) middleware"
    return token
