"""Bearer tokens: created with a name and scopes, stored as a hash, revocable."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.store import SCOPES, Scope
from timeline.store.database import Database
from timeline.store.schema import tokens

# Each scope includes the ones before it: an admin can write, a writer can read.
_IMPLIED: dict[str, frozenset[str]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write"}),
    "admin": frozenset({"read", "write", "admin"}),
}


class Token(msgspec.Struct, frozen=True, kw_only=True):
    """A token's record (never its secret)."""

    name: str
    scopes: tuple[str, ...]
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    def allows(self, scope: str) -> bool:
        """Whether the token grants ``scope`` (directly or through a broader one)."""
        return any(scope in _IMPLIED[s] for s in self.scopes if s in _IMPLIED)


class TokenExists(Exception):
    """A token with this name exists already."""


def _hash(secret: str) -> str:
    # Tokens are 256 random bits, so a plain SHA-256 is enough: there is nothing to brute-force.
    return hashlib.sha256(secret.encode()).hexdigest()


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


def _token(row: sa.RowMapping) -> Token:
    return _record(row["name"], row["scopes"], row["created_at"], row["revoked_at"])


def _record(name: str, scopes: str, created_at: Any, revoked_at: Any) -> Token:
    # SQLite's driver gives the times as SQLAlchemy stored them: ISO text, naive UTC.
    if isinstance(created_at, str):
        created_at = dt.datetime.fromisoformat(created_at)
    if isinstance(revoked_at, str):
        revoked_at = dt.datetime.fromisoformat(revoked_at)
    created = _utc(created_at)
    assert created is not None
    return Token(name=name, scopes=tuple(scopes.split()), created_at=created, revoked_at=_utc(revoked_at))


# A round of checks sent to the driver itself: building the IN list and running it through SQLAlchemy
# cost 4.3% of a write server's CPU under 32 HTTP writers (bench/results-2026-12-04-projection-process.txt).
_BY_HASH = {
    "postgresql": "SELECT name, scopes, created_at, revoked_at, token_hash FROM tokens "
    "WHERE token_hash = ANY($1::text[])",
    "sqlite": "SELECT name, scopes, created_at, revoked_at, token_hash FROM tokens "
    "WHERE token_hash IN (SELECT value FROM json_each(?))",
}


async def _by_hash(conn: AsyncConnection, digests: list[str]) -> dict[str, Token]:
    """The tokens whose hashes are ``digests``, by hash."""
    driver: Any = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "postgresql":
        rows = await driver.fetch(_BY_HASH["postgresql"], digests)
    else:
        rows = await driver.execute_fetchall(_BY_HASH["sqlite"], (json.dumps(digests),))
    return {row[4]: _record(*row[:4]) for row in rows}


async def create(conn: AsyncConnection, name: str, scopes: tuple[Scope, ...]) -> str:
    """Create a token and return its secret, which is shown once and never stored."""
    existing = await conn.execute(sa.select(tokens.c.name).where(tokens.c.name == name))
    if existing.first() is not None:
        raise TokenExists(f"a token named {name!r} exists already; revoke it or pick another name")
    secret = f"tl_{secrets.token_urlsafe(32)}"
    await conn.execute(
        sa.insert(tokens).values(
            name=name,
            token_hash=_hash(secret),
            scopes=" ".join(sorted(set(scopes), key=SCOPES.index)),
            created_at=dt.datetime.now(dt.UTC),
        )
    )
    return secret


async def verify(conn: AsyncConnection, secret: str) -> Token | None:
    """The token a secret belongs to (revoked or not), or None for an unknown secret."""
    result = await conn.execute(sa.select(tokens).where(tokens.c.token_hash == _hash(secret)))
    row = result.mappings().one_or_none()
    return _token(row) if row else None


class Verifier:
    """Checks secrets for one database, many at a time: checks that start while a query is out wait for the
    next one, which looks them all up, so a burst of authenticated requests costs a query or two instead of
    one each. The next query starts after the check did, so it sees every token created or revoked before."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._round: dict[str, asyncio.Future[Token | None]] = {}
        self._runner: asyncio.Task[None] | None = None

    async def verify(self, secret: str) -> Token | None:
        """As ``verify``: the token the secret belongs to (revoked or not), or None."""
        digest = _hash(secret)
        waiting = self._round.get(digest)
        if waiting is None:
            waiting = self._round[digest] = asyncio.get_running_loop().create_future()
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="token-checks")
        # shield: one caller giving up (a client hanging up) must not cancel the others' answer.
        return await asyncio.shield(waiting)

    async def _run(self) -> None:
        while self._round:
            round_, self._round = self._round, {}  # later checks wait for the next round
            try:
                async with self.db.lookup() as conn:
                    found = await _by_hash(conn, list(round_))
            except Exception as error:  # every check in the round fails with it
                _fail(round_.values(), error)
            else:
                for digest, future in round_.items():
                    future.set_result(found.get(digest))
            finally:
                # Cancelled mid-lookup (the server stopping): nobody may be left waiting for an answer.
                _fail(round_.values(), ConnectionError("the token check was stopped"))

    async def close(self) -> None:
        """Stop checking: a check under way fails rather than outliving the database's connections."""
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        _fail(self._round.values(), ConnectionError("the token check was stopped"))
        self._round = {}


def _fail(futures: Iterable[asyncio.Future[Token | None]], error: BaseException) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
            future.exception()  # retrieved here, so an answer nobody awaits anymore logs nothing


async def revoke(conn: AsyncConnection, name: str) -> bool:
    """Revoke a token by name; False if there is no such live token."""
    result = await conn.execute(
        sa.update(tokens)
        .where(tokens.c.name == name, tokens.c.revoked_at.is_(None))
        .values(revoked_at=dt.datetime.now(dt.UTC))
    )
    return bool(result.rowcount)


async def all_tokens(conn: AsyncConnection) -> list[Token]:
    """Every token, by name."""
    result = await conn.execute(sa.select(tokens).order_by(tokens.c.name))
    return [_token(row) for row in result.mappings()]
