"""Idempotency keys: the first response to each (token, key), so a retry is answered, not redone."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Collection

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.store.database import driver_of
from timeline.store.schema import idempotency_keys
from timeline.store.statements import KEYS_ASKED

# Key on a write connection's info: the ``Pending`` keys of the batch of writes in its transaction.
PENDING = "timeline_idempotency_pending"
Ident = tuple[str, str]  # (principal, key)


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    """What was answered the first time, and a hash of the request it answered."""

    request_hash: str
    status_code: int
    body: bytes


def _stored(row: sa.RowMapping) -> StoredResponse:
    return StoredResponse(
        request_hash=row["request_hash"], status_code=row["status_code"], body=row["response"].encode()
    )


async def lookup(conn: AsyncConnection, principal: str, key: str) -> StoredResponse | None:
    """The response stored under this token's key, if any (kept aside for it by a batch, if asked)."""
    pending: Pending | None = conn.info.get(PENDING)
    if pending is not None and (principal, key) in pending.asked:
        return pending.get((principal, key))
    result = await conn.execute(
        sa.select(idempotency_keys).where(
            idempotency_keys.c.principal == principal, idempotency_keys.c.key == key
        )
    )
    row = result.mappings().one_or_none()
    return None if row is None else _stored(row)


async def store(conn: AsyncConnection, principal: str, key: str, response: StoredResponse) -> None:
    """Remember a response; called in the transaction that made the change it reports (by a batch that
    asked about the key, at its end with the others')."""
    pending: Pending | None = conn.info.get(PENDING)
    if pending is not None and (principal, key) in pending.asked:
        pending.put((principal, key), response)
        return
    await _insert(conn, {(principal, key): response})


async def _insert(conn: AsyncConnection, responses: dict[Ident, StoredResponse]) -> None:
    # Through SQLAlchemy, unlike a batch's (``Pending.take``): a key a batch was not told of is stored by its
    # unit, and group commit counts a unit's SQLAlchemy statements to know that a unit failing after one
    # must be rolled back (a statement sent to the driver would go unseen).
    now = dt.datetime.now(dt.UTC)
    await conn.execute(
        sa.insert(idempotency_keys),
        [
            {
                "principal": principal,
                "key": key,
                "request_hash": response.request_hash,
                "status_code": response.status_code,
                "response": response.body.decode(),
                "created_at": now,
            }
            for (principal, key), response in responses.items()
        ],
    )


class Pending:
    """The keys a batch of writes (group commit) asks about, read in one query before its first write, and
    the responses it stores, inserted with its events (alone, under the lock, when it appended none): a
    keyed write then costs no round trip of its own. A later write in the batch sees what an earlier one
    stored. Under the log's lock no other writer can store one of these keys meanwhile; without it
    (``Database.append``), one that did fails the append on the keys' primary key, and the batch runs again
    under the lock."""

    def __init__(self, asked: Collection[Ident], found: dict[Ident, StoredResponse]) -> None:
        self.asked = frozenset(asked)
        self._found = found
        self._stored: dict[Ident, StoredResponse] = {}

    @classmethod
    async def read(cls, conn: AsyncConnection, asked: Collection[Ident]) -> Pending:
        """The responses kept for the keys ``asked`` (one statement on the driver)."""
        driver = await driver_of(conn)
        if conn.dialect.name == "postgresql":
            principals, keys = zip(*asked, strict=True)
            rows = await driver.fetch(KEYS_ASKED["postgresql"], principals, keys)
        else:
            rows = await driver.execute_fetchall(KEYS_ASKED["sqlite"], (json.dumps(list(asked)),))
        found = {
            (principal, key): StoredResponse(request_hash=digest, status_code=status, body=body.encode())
            for principal, key, digest, status, body in rows
        }
        return cls(asked, found)

    def get(self, ident: Ident) -> StoredResponse | None:
        return self._stored.get(ident) or self._found.get(ident)

    def put(self, ident: Ident, response: StoredResponse) -> None:
        """Keep ``response`` as the answer under ``ident``, which must have none yet: a key is answered once
        (an answer replaced here would survive its unit's rewind, which counts answers)."""
        if self.get(ident) is not None:
            raise RuntimeError(
                f"the idempotency key {ident[1]!r} of {ident[0]!r} is answered already: look a key up "
                "(idempotency.lookup) and replay its answer before storing one"
            )
        self._stored[ident] = response

    def mark(self) -> int:
        """A point to rewind to if the write that follows fails."""
        return len(self._stored)

    def rewind(self, mark: int) -> None:
        for ident in list(self._stored)[mark:]:
            del self._stored[ident]

    def take(self) -> list[tuple[str, str, str, int, str]]:
        """The responses stored, as rows for ``driver.Changes.answers``: inserted with the batch's events
        (on PostgreSQL in the same statement, which a write without a transaction of its own needs)."""
        rows = [(p, k, r.request_hash, r.status_code, r.body.decode()) for (p, k), r in self._stored.items()]
        self._stored = {}
        return rows
