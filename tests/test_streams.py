"""Stream records: the rules read one row per stream, and that row is checked against the log."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from timeline.app.errors import Rejected
from timeline.domain.events import ClaimDenied, SourceAmended
from timeline.service import Recorder
from timeline.store import eventlog, streams
from timeline.store.database import Database
from timeline.store.schema import stream_records

from .helpers import DAY, NOW, claim_made, document, new, source, subject


def _denial(denial_id: str, by: str, statement: str = "no") -> ClaimDenied:
    return ClaimDenied(
        claim_id="c1",
        denial_id=denial_id,
        denied_by=by,
        statement=statement,
        stated_on=DAY,
        document_ids=("d",),
    )


@pytest.fixture(autouse=True)
def _every_write_keeps_a_record(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "EVERY", 1)


async def _record(db: Database, *events: object) -> int:
    async with db.write() as conn:
        recorder = Recorder(conn, recorded_by="test", label="test")
        for i, event in enumerate(events):
            await recorder.record(event, origin=f"events[{i}]")  # type: ignore[arg-type]
        return len(await recorder.finish())


async def _records(db: Database) -> dict[str, int]:
    async with db.read() as conn:
        rows = await conn.execute(sa.select(stream_records.c.stream_id, stream_records.c.version))
        return {str(stream): int(version) for stream, version in rows}


async def test_a_write_keeps_each_streams_record_at_its_version(db: Database) -> None:
    await _record(db, subject("s"), source("a"), source("b"), document("d"), claim_made("c1", "a", 5))
    await _record(db, _denial("n1", "b"), SourceAmended(source_id="a", name="Agency A"))
    records = await _records(db)
    assert records["claim-c1"] == 2
    assert records["source-a"] == 2
    assert records["subject-s"] == 1
    async with db.read() as conn:
        state = (
            await conn.execute(
                sa.select(stream_records.c.state).where(stream_records.c.stream_id == "claim-c1")
            )
        ).scalar_one()
    claim = streams.decode(state).claim
    assert claim is not None
    assert (claim.status, claim.disputed_by) == ("disputed", ("b",))


async def test_events_past_a_record_are_folded_from_the_log(db: Database) -> None:
    # An event appended without a record (the raw log API) still counts: the same denial again is a
    # repeat, a different one under its id a conflict that names where the first came from.
    await _record(db, subject("s"), source("a"), source("b"), document("d"), claim_made("c1", "a", 5))
    async with db.write() as conn:
        await eventlog.append(conn, "claim-c1", 1, [new(_denial("n1", "b"))], recorded_at=NOW)
    assert await _record(db, _denial("n1", "b")) == 0
    with pytest.raises(Rejected, match="first recorded at position 6"):
        await _record(db, _denial("n1", "b", statement="changed"))
    assert await _record(db, _denial("n2", "b", statement="again")) == 1
    assert (await _records(db))["claim-c1"] == 3


@pytest.mark.parametrize("damage", ["missing", "other format"])
async def test_a_missing_or_foreign_record_is_refolded_from_the_log(db: Database, damage: str) -> None:
    await _record(db, subject("s"), source("a"), source("b"), document("d"), claim_made("c1", "a", 5))
    await _record(db, _denial("n1", "b"))
    async with db.write() as conn:
        if damage == "missing":
            await conn.execute(sa.delete(stream_records))
        else:
            await conn.execute(sa.update(stream_records).values(format=streams.FORMAT + 1, state="not json"))
    assert await _record(db, _denial("n1", "b")) == 0
    assert await _record(db, _denial("n2", "b", statement="again")) == 1
    async with db.read() as conn:
        assert await eventlog.stream_version(conn, "claim-c1") == 3
    assert (await _records(db))["claim-c1"] == 3


async def test_a_record_is_renewed_only_once_enough_events_gathered_past_it(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams, "EVERY", 3)
    await _record(db, subject("s"), source("a"), source("b"), document("d"), claim_made("c1", "a", 5))
    assert "claim-c1" not in await _records(db)  # a short stream is read from the log
    await _record(db, _denial("n1", "b"), _denial("n2", "b", "again"))
    assert (await _records(db))["claim-c1"] == 3
    await _record(db, _denial("n3", "b", "thrice"))
    assert (await _records(db))["claim-c1"] == 3
    assert await _record(db, _denial("n1", "b")) == 0  # folded from the record and the event past it
    await _record(db, _denial("n4", "b", "4"), _denial("n5", "b", "5"))
    assert (await _records(db))["claim-c1"] == 6
