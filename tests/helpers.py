"""Small builders shared by tests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from timeline.domain import claims
from timeline.domain.events import (
    ClaimMade,
    DocumentRegistered,
    Quantity,
    SourceRegistered,
    StatedDate,
    SubjectRegistered,
)
from timeline.store.database import Database
from timeline.store.eventlog import Metadata, NewEvent

DAY = StatedDate(date="2024-10-21", precision="day")
NOW = dt.datetime(2024, 10, 21, 12, tzinfo=dt.UTC)


def subject(ident: str = "s") -> SubjectRegistered:
    return SubjectRegistered(subject_id=ident, name=f"Subject {ident}")


def source(ident: str) -> SourceRegistered:
    return SourceRegistered(source_id=ident, name=f"Source {ident}", kind="agency")


def document(ident: str = "d") -> DocumentRegistered:
    return DocumentRegistered(document_id=ident, title=f"Document {ident}", published_on=DAY)


def claim_made(
    claim_id: str, source_id: str, value: int | None = None, *, subject_id: str = "s"
) -> ClaimMade:
    return ClaimMade(
        claim_id=claim_id,
        subject_id=subject_id,
        source_id=source_id,
        statement=f"{source_id} says {value}",
        modality="asserted",
        stated_on=DAY,
        document_ids=("d",),
        metric="soldiers" if value is not None else None,
        quantity=Quantity(comparator="exactly", value=value, unit="soldiers") if value is not None else None,
    )


def new(event: object, who: str = "test") -> NewEvent:
    assert not isinstance(event, NewEvent)
    return NewEvent(event=event, valid_from=None, metadata=Metadata(recorded_by=who))  # type: ignore[arg-type]


@contextlib.contextmanager
def logging_restored() -> Iterator[None]:
    """Leave the root logger, structlog and the logging module's flags as they were (``logs.configure``
    changes all three)."""
    import logging

    import structlog

    from timeline import logs

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    flags = (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    try:
        yield
    finally:
        root.handlers, root.level = handlers, level
        (logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing) = flags
        structlog.reset_defaults()
        logs._setup = None  # as if configure had never run


class FoldCounter:
    """Counts the claim folds that do the work (``claims._step``), remembered ones not included."""

    def __init__(self) -> None:
        self.steps = 0
        self._step = claims._step

    def __call__(
        self,
        claim: claims.Claim | None,
        event: claims.ClaimEvent,
        recorded: tuple[claims.ClaimEvent, ...] = (),
    ) -> claims.Claim:
        self.steps += 1
        return self._step(claim, event, recorded)


async def until(check: Callable[[], Any], seconds: float = 10.0) -> None:
    """Wait until ``check()`` (a plain or awaitable answer) is true; fail after ``seconds``."""
    for _ in range(int(seconds * 50)):
        answer = check()
        if await answer if inspect.isawaitable(answer) else answer:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still not so after {seconds} s")


def checkouts(engine: AsyncEngine) -> list[int]:
    """The engine's pool checkouts from now on, counted in the one element of the list returned."""
    count = [0]

    @sa.event.listens_for(engine.sync_engine, "checkout")
    def _count(*_: Any) -> None:
        count[0] += 1

    return count


async def scalar(db: Database, query: str, **params: Any) -> Any:
    """One value read outside any transaction (``Database.lookup``)."""
    async with db.lookup() as conn:
        return (await conn.execute(sa.text(query), params)).scalar_one()
