"""Idempotency keys: the first response to each (token, key), so a retry is answered, not redone."""

from __future__ import annotations

import datetime as dt

import msgspec
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from timeline.store.schema import idempotency_keys


class StoredResponse(msgspec.Struct, frozen=True, kw_only=True):
    """What was answered the first time, and a hash of the request it answered."""

    request_hash: str
    status_code: int
    body: bytes


async def lookup(conn: AsyncConnection, principal: str, key: str) -> StoredResponse | None:
    """The response stored under this token's key, if any."""
    result = await conn.execute(
        sa.select(idempotency_keys).where(
            idempotency_keys.c.principal == principal, idempotency_keys.c.key == key
        )
    )
    row = result.mappings().one_or_none()
    if row is None:
        return None
    return StoredResponse(
        request_hash=row["request_hash"],
        status_code=row["status_code"],
        body=row["response"].encode(),
    )


async def store(conn: AsyncConnection, principal: str, key: str, response: StoredResponse) -> None:
    """Remember a response; called in the transaction that made the change it reports."""
    await conn.execute(
        sa.insert(idempotency_keys).values(
            principal=principal,
            key=key,
            request_hash=response.request_hash,
            status_code=response.status_code,
            response=response.body.decode(),
            created_at=dt.datetime.now(dt.UTC),
        )
    )
