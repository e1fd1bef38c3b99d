"""Bearer-token access: guards that let a request through only with the scope it needs."""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from timeline.api.settings import Settings
from timeline.store import tokens
from timeline.store.tokens import Token

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="timeline"'}


async def _authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Token:
    header = connection.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if not header:
        raise NotAuthorizedException(
            "this needs a bearer token: send 'Authorization: Bearer <token>'", headers=_CHALLENGE
        )
    if scheme.lower() != "bearer" or not secret.strip():
        raise NotAuthorizedException("expected 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    verifier: tokens.Verifier = connection.app.state.tokens
    token = await verifier.verify(secret.strip())
    if token is None:
        raise NotAuthorizedException("unknown token", headers=_CHALLENGE)
    if token.revoked_at is not None:
        raise NotAuthorizedException(
            f"token {token.name!r} was revoked at {token.revoked_at.isoformat()}", headers=_CHALLENGE
        )
    return token


def requires(scope: str) -> Guard:
    """A guard admitting requests whose token has ``scope``; reads may be public (``Settings``)."""

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        settings: Settings = connection.app.state.settings
        if scope == "read" and settings.public_reads:
            return
        token = await _authenticate(connection)
        if not token.allows(scope):
            raise PermissionDeniedException(
                f"token {token.name!r} has scopes {', '.join(token.scopes)}; this needs {scope!r}"
            )
        connection.state.token = token

    return guard


def principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Token:
    """The token a guarded request was admitted with."""
    token = connection.state.get("token")
    assert isinstance(token, Token), "route is missing its requires(...) guard"
    return token
