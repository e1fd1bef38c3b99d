"""Importing fixtures through the same write path as every other command: all or nothing, idempotent."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
from sqlalchemy.engine import make_url

from timeline.app.errors import Rejected
from timeline.domain.claims import entry_id, remembering
from timeline.domain.events import ClaimDenied, DomainEvent, RecordCorrected, SourceAmended, SourceRegistered
from timeline.domain.rules import uncorrectable
from timeline.domain.streams import claim_stream, references, source_stream, stream_of
from timeline.fixtures import CorrectionRef, FixtureError, ParsedFixture, parse, to_events
from timeline.service import Recorder
from timeline.store.database import Database


class ImportResult(msgspec.Struct, frozen=True, kw_only=True):
    """What one fixture added to the log (nothing, when it was imported before)."""

    file: str
    document_id: str
    import_id: str
    appended: int
    unchanged: int
    first_position: int | None
    last_position: int | None


class TooSlow(Exception):
    """Reading the fixtures took longer than allowed; nothing was imported."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"reading the fixtures took over {seconds:g} s; nothing was imported")
        self.seconds = seconds


class LoadedFixture(msgspec.Struct, frozen=True):
    """A fixture's text with the name used for it in errors and metadata."""

    name: str
    text: bytes


def read_files(paths: Sequence[Path]) -> list[LoadedFixture]:
    """Read fixture files; a missing or unreadable file is a ``FixtureError`` naming it."""
    loaded = []
    for path in paths:
        try:
            loaded.append(LoadedFixture(str(path), path.read_bytes()))
        except OSError as exc:
            raise FixtureError(str(path), "", None, f"cannot read file: {exc.strerror}") from None
    return loaded


_Parsed = tuple[list[ParsedFixture], list[list[tuple[str, DomainEvent | CorrectionRef]]]]


def _parse_all(fixtures: Sequence[LoadedFixture]) -> _Parsed:
    parsed = [parse(f.text, f.name) for f in fixtures]
    return parsed, [list(to_events(item)) for item in parsed]


async def import_fixtures(
    db: Database,
    fixtures: Sequence[LoadedFixture],
    *,
    recorded_by: str,
    progress: Callable[[int, int], None] | None = None,
    parse_timeout: float | None = None,
) -> list[ImportResult]:
    """Import fixtures in order, in one transaction: any error in any of them records nothing.
    ``progress(done, total)`` is told of each proposed event as it is recorded or found recorded already.
    Parsing runs in a worker thread (off the event loop); past ``parse_timeout`` seconds, ``TooSlow``."""
    parsed = await _parse(fixtures, parse_timeout)
    return await _record(db, fixtures, parsed, recorded_by=recorded_by, progress=progress)


async def import_fixtures_apart(
    db: Database,
    fixtures: Sequence[LoadedFixture],
    *,
    recorded_by: str,
    parse_timeout: float | None = None,
) -> list[ImportResult]:
    """``import_fixtures`` recorded on a thread, event loop and engine of its own, so the caller's loop keeps
    serving while thousands of events are checked and appended (as a server's import must)."""
    if db.dialect == "sqlite" and make_url(db.url).database in (None, "", ":memory:"):
        # An in-memory database exists only on this engine: no other thread can open it.
        return await import_fixtures(db, fixtures, recorded_by=recorded_by, parse_timeout=parse_timeout)
    parsed = await _parse(fixtures, parse_timeout)
    # This process's other writers wait behind the import as behind any write (on SQLite they would
    # otherwise poll the file's lock).
    async with db.writers_turn():
        return await asyncio.to_thread(_record_apart, db, fixtures, parsed, recorded_by)


def _record_apart(
    db: Database, fixtures: Sequence[LoadedFixture], parsed: _Parsed, recorded_by: str
) -> list[ImportResult]:
    async def run() -> list[ImportResult]:
        # The same key and the same readers to wake as ``db``; a connection of its own, on this loop.
        own = Database(db.url, pool_size=1, lock_timeout=db.lock_timeout, signer=db.signer)
        own.notifier = db.notifier
        try:
            return await _record(own, fixtures, parsed, recorded_by=recorded_by)
        finally:
            await own.dispose()

    return asyncio.run(run())


async def _parse(fixtures: Sequence[LoadedFixture], seconds: float | None) -> _Parsed:
    try:
        return await asyncio.wait_for(asyncio.to_thread(_parse_all, fixtures), timeout=seconds)
    except TimeoutError:
        raise TooSlow(seconds or 0) from None


async def _record(
    db: Database,
    fixtures: Sequence[LoadedFixture],
    parsed_fixtures: _Parsed,
    *,
    recorded_by: str,
    progress: Callable[[int, int], None] | None = None,
) -> list[ImportResult]:
    parsed, proposed_by_fixture = parsed_fixtures
    total = sum(len(proposals) for proposals in proposed_by_fixture)
    done = 0
    results = []
    # Each event is folded three times (rules, the views' look ahead, the views): remembered, twice skipped.
    with remembering(total):
        async with db.write() as conn:
            for fixture, item, proposals in zip(fixtures, parsed, proposed_by_fixture, strict=True):
                import_id = hashlib.sha256(fixture.text).hexdigest()[:16]
                recorder = Recorder(conn, recorded_by=recorded_by, label=item.file, import_id=import_id)
                streams, named = _streams_of(proposals)
                await recorder.preload(streams)
                for (origin, proposed), names in zip(proposals, named, strict=True):
                    event = (
                        await _resolve(recorder, item, origin, proposed)
                        if isinstance(proposed, CorrectionRef)
                        else await _aliases_of_old_source(recorder, proposed)
                    )
                    try:
                        # A resolved correction, or a registration turned amendment, names its own.
                        await recorder.record(
                            event, origin=origin, named=names if event is proposed else None
                        )
                    except Rejected as rejected:
                        raise _located(item, rejected, event) from None
                    done += 1
                    if progress is not None:
                        progress(done, total)
                appended = await recorder.finish()
                results.append(
                    ImportResult(
                        file=item.file,
                        document_id=item.fixture.document.id,
                        import_id=import_id,
                        appended=len(appended),
                        unchanged=recorder.unchanged,
                        first_position=appended[0].position if appended else None,
                        last_position=appended[-1].position if appended else None,
                    )
                )
    return results


def _streams_of(
    proposals: list[tuple[str, DomainEvent | CorrectionRef]],
) -> tuple[set[str], list[set[str] | None]]:
    """Every stream an import will read (those it writes to and those its events refer to), and each
    proposed event's ``references`` (None for a correction, not an event yet)."""
    streams: set[str] = set()
    named: list[set[str] | None] = []
    for _, proposed in proposals:
        if isinstance(proposed, CorrectionRef):
            streams.add(claim_stream(proposed.claim_id))
            named.append(None)
        else:
            names = references(proposed)
            streams.add(stream_of(proposed))
            streams |= names
            named.append(names)
    return streams, named


async def _aliases_of_old_source(recorder: Recorder, event: DomainEvent) -> DomainEvent:
    """A fixture's source with aliases that a version before 2026-12 registered without them (it dropped a
    fixture's aliases): the aliases are added by an amendment, so the same fixture still imports."""
    if not isinstance(event, SourceRegistered) or not event.aliases:
        return event
    first = await recorder.first_registration(source_stream(event.source_id))
    if isinstance(first, SourceRegistered) and first == msgspec.structs.replace(event, aliases=()):
        return SourceAmended(source_id=event.source_id, aliases=event.aliases)
    return event


async def _resolve(
    recorder: Recorder, item: ParsedFixture, origin: str, ref: CorrectionRef
) -> RecordCorrected:
    """Turn a correction's ``corrects`` (an entry id) into the version of the event it names."""
    claim = await recorder.claim(ref.claim_id)
    if claim is None:
        path = f"{origin}.claim"
        raise FixtureError(item.file, path, item.line_of(path), uncorrectable(ref.claim_id))
    version = next(
        (
            v
            for v, event in enumerate(claim.recorded, start=1)
            if not isinstance(event, RecordCorrected) and entry_id(event) == ref.corrects
        ),
        None,
    )
    if version is None:
        path = f"{origin}.corrects"
        raise FixtureError(
            item.file,
            path,
            item.line_of(path),
            f"claim {ref.claim_id!r} has no entry {ref.corrects!r}; expected the claim's own id or the id "
            "of one of its revisions, denials, confirmations, evidence or retraction (a statement cannot "
            "be corrected: record a new one)",
        )
    return RecordCorrected(
        claim_id=ref.claim_id,
        correction_id=ref.correction_id,
        corrects_version=version,
        changes=ref.changes,
        reason=ref.reason,
    )


def _located(item: ParsedFixture, rejected: Rejected, event: object) -> FixtureError:
    field = rejected.field
    if isinstance(event, ClaimDenied) and field == "claim":
        # One denial entry lists several claims; point at the one that failed.
        entry_index = int(rejected.origin.removeprefix("events[").rstrip("]"))
        entry = item.fixture.events[entry_index]
        field = f"claims[{entry.claims.index(event.claim_id)}]"  # type: ignore[union-attr]
    path = f"{rejected.origin}.{field}" if field else rejected.origin
    return FixtureError(item.file, path, item.line_of(path), rejected.message)
