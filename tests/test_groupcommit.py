"""Group commit on both databases: units share a transaction, a failing unit rolls back alone."""

from __future__ import annotations

import asyncio

from timeline.groupcommit import Committer
from timeline.service import Recorder
from timeline.store import audit, eventlog
from timeline.store.database import Database

from .helpers import claim_made, document, source, subject


def _unit(event: object, fail: bool = False):  # type: ignore[no-untyped-def]
    async def unit(recorder: Recorder) -> int:
        recorder.act_as(recorded_by="test", label="test")
        [recorded] = await recorder.record(event, origin="")  # type: ignore[arg-type]
        if fail:
            raise RuntimeError("this unit fails after writing")
        return recorded.position

    return unit


async def test_units_share_a_commit_and_fail_alone(db: Database) -> None:
    committer = Committer(db)
    sizes: list[int] = []
    commit = committer._commit

    async def counting(batch: list) -> None:  # type: ignore[type-arg]
        sizes.append(len(batch))
        await commit(batch)

    committer._commit = counting  # type: ignore[method-assign]
    try:
        await committer.run(_unit(subject("s")))
        await committer.run(_unit(source("a")))
        await committer.run(_unit(document("d")))
        results = await asyncio.gather(
            *(
                committer.run(_unit(claim_made(f"c{i}", "a", i, subject_id="s"), fail=i == 3))
                for i in range(8)
            ),
            return_exceptions=True,
        )
    finally:
        await committer.close()
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1
    assert str(failed[0]) == "this unit fails after writing"
    positions = [r for r in results if isinstance(r, int)]
    assert sorted(positions) == list(range(4, 11))  # dense: the failed unit's position was given back
    async with db.read() as conn:
        streams = [e.stream_id for e in await eventlog.read_all(conn, after=3)]
        report = await audit.verify(conn)
    assert "claim-c3" not in streams
    assert len(streams) == 7
    assert report.ok
    assert max(sizes) > 1, "concurrent units should have shared a transaction"
