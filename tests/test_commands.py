"""Commands without HTTP: one proposed event recorded with its caller's metadata, the expected version
checked and the Idempotency-Key honoured, in the application layer any entry point calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import event as sa_event

from timeline.app import commands
from timeline.app.errors import IdempotencyKeyReused, PreconditionFailed, Rejected
from timeline.app.imports import LoadedFixture, import_fixtures
from timeline.domain.events import ClaimConfirmed, StatedDate
from timeline.domain.streams import claim_stream
from timeline.groupcommit import Committer
from timeline.store import eventlog
from timeline.store.database import Database

from .conftest import SEED

NIS = "nis-1500-soldiers-sent-for-training"


def _confirmation(confirmation_id: str, by: str = "volodymyr-zelenskyy") -> ClaimConfirmed:
    return ClaimConfirmed(
        claim_id=NIS,
        confirmation_id=confirmation_id,
        confirmed_by=by,
        statement="confirmed",
        stated_on=StatedDate(date="2024-10-25", precision="day"),
        document_ids=("000-16630df2654ec508",),
    )


def _answer(outcome: commands.Outcome) -> tuple[int, bytes]:
    # What an entry point would send back: here, how many events were appended and the version.
    return (201 if outcome.appended else 200), f"{len(outcome.appended)}@{outcome.version}".encode()


def _caller(key: str | None = None, fingerprint: str = "") -> commands.Caller:
    return commands.Caller(
        recorded_by="editor",
        label="test confirm",
        request_id="r-1",
        idempotency_key=key,
        fingerprint=fingerprint,
    )


@pytest.fixture
async def committer(db: Database) -> AsyncIterator[Committer]:
    await import_fixtures(db, [LoadedFixture(str(SEED), SEED.read_bytes())], recorded_by="seed")
    running = Committer(db)
    yield running
    await running.close()


async def _claim_events(db: Database) -> list[eventlog.RecordedEvent]:
    async with db.read() as conn:
        return await eventlog.read_stream(conn, claim_stream(NIS))


async def test_a_command_records_its_event_with_the_callers_metadata(
    db: Database, committer: Committer
) -> None:
    before = len(await _claim_events(db))
    reply = await commands.record(committer, lambda: _confirmation("c1"), _caller(), _answer)
    assert reply.outcome is not None
    assert reply.status_code == 201
    assert reply.outcome.version == before + 1
    [recorded] = (await _claim_events(db))[before:]
    assert recorded.type == "ClaimConfirmed"
    assert (recorded.metadata.recorded_by, recorded.metadata.origin, recorded.metadata.request_id) == (
        "editor",
        "test confirm",
        "r-1",
    )
    # The very same event again appends nothing.
    again = await commands.record(committer, lambda: _confirmation("c1"), _caller(), _answer)
    assert (again.status_code, again.body) == (200, f"0@{before + 1}".encode())


async def test_a_retry_with_the_same_key_gets_the_first_answer_and_records_nothing(
    db: Database, committer: Committer
) -> None:
    first = await commands.record(committer, lambda: _confirmation("c2"), _caller("k", "f1"), _answer)
    count = len(await _claim_events(db))
    retry = await commands.record(committer, lambda: _confirmation("c2"), _caller("k", "f1"), _answer)
    assert retry.outcome is None  # the kept answer, not a new outcome
    assert (retry.status_code, retry.body) == (first.status_code, first.body) == (201, first.body)
    assert len(await _claim_events(db)) == count
    with pytest.raises(IdempotencyKeyReused):
        await commands.record(committer, lambda: _confirmation("c3"), _caller("k", "f2"), _answer)
    assert len(await _claim_events(db)) == count


async def test_a_command_against_an_old_version_or_breaking_a_rule_records_nothing(
    db: Database, committer: Committer
) -> None:
    count = len(await _claim_events(db))
    with pytest.raises(PreconditionFailed):
        await commands.record(
            committer, lambda: _confirmation("c4"), _caller(), _answer, expected_version=count - 1
        )
    with pytest.raises(Rejected, match="own source"):
        # The NIS cannot confirm its own claim.
        await commands.record(
            committer, lambda: _confirmation("c5", by="south-korea-nis"), _caller(), _answer
        )
    assert len(await _claim_events(db)) == count


async def test_keyed_commands_sharing_a_batch_are_answered_as_if_one_after_another(
    db: Database, committer: Committer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Written together (one transaction): the keys are looked up in one query and stored in one statement,
    # yet a retry inside the batch gets the first answer, a reused key is refused, and a write the rules
    # refuse keeps no answer under its key (its retry is judged afresh).
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "idempotency_keys" in statement:
            statements.append(statement.split(maxsplit=1)[0].upper())

    count = len(await _claim_events(db))
    calls = [
        (lambda: _confirmation("b1"), _caller("k1", "f1")),
        (lambda: _confirmation("b1"), _caller("k1", "f1")),  # the same request again
        (lambda: _confirmation("b2"), _caller("k1", "f2")),  # the key reused for another request
        (lambda: _confirmation("b3", by="south-korea-nis"), _caller("k2", "f3")),  # refused by the rules
        (lambda: _confirmation("b4"), _caller("k3", "f4")),
    ]
    async with db.write():  # hold the lock so that all five queue up and share one batch
        sa_event.listen(db.engine.sync_engine, "before_cursor_execute", seen)
        tasks = [
            asyncio.create_task(commands.record(committer, propose, caller, _answer))
            for propose, caller in calls
        ]
        await asyncio.sleep(0.1)
    try:
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        sa_event.remove(db.engine.sync_engine, "before_cursor_execute", seen)
    first, retry, reused, refused, other = results
    assert isinstance(first, commands.Reply)
    assert isinstance(retry, commands.Reply)
    assert first.outcome is not None
    assert retry.outcome is None
    assert (retry.status_code, retry.body) == (first.status_code, first.body)
    assert isinstance(reused, IdempotencyKeyReused)
    assert isinstance(refused, Rejected)
    assert isinstance(other, commands.Reply)
    assert other.status_code == 201
    assert len(await _claim_events(db)) == count + 2
    assert statements.count("SELECT") <= 2, statements  # one per batch (five, one a write, before)
    assert statements.count("INSERT") <= 2, statements
    # The refused write's key holds nothing: asked again, properly this time, it records.
    again = await commands.record(committer, lambda: _confirmation("b5"), _caller("k2", "f5"), _answer)
    assert again.status_code == 201
