"""The peer's own projection machinery keeping a latest-estimate view of the same log: the rebuild's baseline.

An `eventsourcing` application holds the benchmark log's events (its stored events: our JSON, under topics of
the small event classes below). A `Projection` folds them into two tables, the claims' ranks and the chosen
claim per (subject, metric, source), each event in one transaction with its tracking record, as the library's
views do. On PostgreSQL its `ProjectionRunner` runs it; the library's SQLite recorder has no subscriptions, so
there the same projection is fed by pulling notifications through the application's mapper, as its followers
do. Both views run at timeline's durability: SQLite in WAL with synchronous=NORMAL, PostgreSQL's defaults.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.dispatch import singledispatchmethod
from eventsourcing.persistence import StoredEvent, Tracking, TrackingRecorder
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.projection import Projection, ProjectionRunner
from eventsourcing.sqlite import SQLiteFactory, SQLiteTrackingRecorder
from eventsourcing.utils import Environment, get_topic
from psycopg.sql import SQL, Identifier
from sqlalchemy.engine import make_url

from timeline.domain.events import encode_event
from timeline.domain.streams import stream_of
from timeline_bench.baselines import at_our_durability
from timeline_bench.generator import generate


class PeerEvent:
    """A stored event as the peer's mapper rebuilds it: our event's fields in ``__dict__``."""

    originator_id: uuid.UUID
    originator_version: int


class ClaimMade(PeerEvent):
    claim_id: str
    subject_id: str
    source_id: str
    metric: str | None
    stated_on: dict[str, str]
    quantity: dict[str, Any] | None


class ClaimRevised(PeerEvent):
    claim_id: str
    stated_on: dict[str, str]
    quantity: dict[str, Any] | None


class ClaimRetracted(PeerEvent):
    claim_id: str


class ClaimTouched(PeerEvent):
    """A denial, confirmation, evidence or correction of wording: the claim changed, its figure did not."""

    claim_id: str


class Registered(PeerEvent):
    """A subject, source or document registered or amended: nothing for this view."""


_CLASSES: dict[str, type[PeerEvent]] = {
    "ClaimMade": ClaimMade,
    "ClaimRevised": ClaimRevised,
    "ClaimRetracted": ClaimRetracted,
    "ClaimDenied": ClaimTouched,
    "ClaimConfirmed": ClaimTouched,
    "EvidenceAttached": ClaimTouched,
    "RecordCorrected": ClaimTouched,
}


def _start(stated_on: dict[str, str]) -> str:
    """The first day of the stated period, as ISO text (sorts as the date does)."""
    return stated_on["date"] + {"day": "", "month": "-01", "year": "-01-01"}[stated_on["precision"]]


class EstimatesView(TrackingRecorder, ABC):
    """The latest figure per (subject, metric, source): a claim's rank is its stated date, then its id (the
    bench log's claims are all asserted, dated to the day, so timeline's precision and kind ties never
    arise); retracted claims and claims without a figure are not candidates."""

    @abstractmethod
    def made(self, event: ClaimMade, tracking: Tracking) -> None:
        """Record a new claim and choose again under its key."""

    @abstractmethod
    def changed(
        self, claim_id: str, tracking: Tracking, *, start: str | None = None, live: bool | None = None
    ) -> None:
        """Record a claim's new rank (its last position, maybe its date or liveness) and choose again."""

    @abstractmethod
    def skip(self, tracking: Tracking) -> None:
        """Record only the tracking position."""


class EstimatesProjection(Projection[EstimatesView]):
    """Folds the log's claim events into ``EstimatesView``."""

    name = "estimates"

    @singledispatchmethod
    def process_event(self, domain_event: Any, tracking: Tracking) -> None:
        self.view.skip(tracking)

    @process_event.register
    def _(self, domain_event: ClaimMade, tracking: Tracking) -> None:
        self.view.made(domain_event, tracking)

    @process_event.register
    def _(self, domain_event: ClaimRevised, tracking: Tracking) -> None:
        self.view.changed(domain_event.claim_id, tracking, start=_start(domain_event.stated_on))

    @process_event.register
    def _(self, domain_event: ClaimRetracted, tracking: Tracking) -> None:
        self.view.changed(domain_event.claim_id, tracking, live=False)

    @process_event.register
    def _(self, domain_event: ClaimTouched, tracking: Tracking) -> None:
        self.view.changed(domain_event.claim_id, tracking)


# The view's statements, written once with named parameters; each database spells a parameter its own way.
_TABLES = (
    "CREATE TABLE IF NOT EXISTS peer_claims (claim_id TEXT PRIMARY KEY, subject_id TEXT NOT NULL, "
    "metric TEXT, source_id TEXT NOT NULL, stated_start TEXT NOT NULL, live BOOLEAN NOT NULL, "
    "updated BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS peer_claims_key ON peer_claims (subject_id, metric, source_id)",
    "CREATE TABLE IF NOT EXISTS peer_estimates (subject_id TEXT, metric TEXT, source_id TEXT, "
    "claim_id TEXT NOT NULL, PRIMARY KEY (subject_id, metric, source_id))",
)
_MAKE = (
    "INSERT INTO peer_claims VALUES ({claim_id}, {subject_id}, {metric}, {source_id}, {start}, {live}, "
    "{updated})"
)
_CHANGE = (
    "UPDATE peer_claims SET updated = {updated}, stated_start = coalesce({start}, stated_start), "
    "live = coalesce({live}, live) WHERE claim_id = {claim_id} RETURNING subject_id, metric, source_id"
)
_CHOOSE = (
    "INSERT INTO peer_estimates SELECT subject_id, metric, source_id, claim_id FROM peer_claims "
    "WHERE subject_id = {subject_id} AND metric = {metric} AND source_id = {source_id} AND live "
    "ORDER BY stated_start DESC, claim_id {collated} DESC LIMIT 1 "
    "ON CONFLICT (subject_id, metric, source_id) DO UPDATE SET claim_id = excluded.claim_id"
)
_UNCHOOSE = (
    "DELETE FROM peer_estimates WHERE subject_id = {subject_id} AND metric = {metric} "
    "AND source_id = {source_id} AND NOT EXISTS (SELECT 1 FROM peer_claims WHERE subject_id = {subject_id} "
    "AND metric = {metric} AND source_id = {source_id} AND live)"
)
_NAMES = ("claim_id", "subject_id", "metric", "source_id", "start", "live", "updated")


def _spelled(statement: str, style: str) -> str:
    # Ids compare by code point, as Python's strings do (PostgreSQL's default collation may not).
    collated = 'COLLATE "C"' if style.startswith("%") else ""
    return statement.format(collated=collated, **{n: style.format(n) for n in _NAMES})


class _Statements:
    """The view's work, in whichever cursor and parameter style the recorder gives."""

    def __init__(self, style: str) -> None:
        self.make, self.change, self.choose, self.unchoose = (
            _spelled(s, style) for s in (_MAKE, _CHANGE, _CHOOSE, _UNCHOOSE)
        )

    def made(self, cursor: Any, event: ClaimMade, tracking: Tracking) -> None:
        key = {"subject_id": event.subject_id, "metric": event.metric, "source_id": event.source_id}
        live = event.quantity is not None
        cursor.execute(
            self.make,
            {
                "claim_id": event.claim_id,
                **key,
                "start": _start(event.stated_on),
                "live": live,
                "updated": tracking.notification_id,
            },
        )
        if event.metric is not None and live:
            cursor.execute(self.choose, key)

    def changed(
        self, cursor: Any, claim_id: str, tracking: Tracking, start: str | None, live: bool | None
    ) -> None:
        params = {"claim_id": claim_id, "start": start, "live": live, "updated": tracking.notification_id}
        cursor.execute(self.change, params)
        subject_id, metric, source_id = tuple(cursor.fetchone())
        if metric is not None:
            key = {"subject_id": subject_id, "metric": metric, "source_id": source_id}
            cursor.execute(self.choose, key)
            if live is False:
                cursor.execute(self.unchoose, key)


class _TrackedInOneTransaction(EstimatesView, ABC):
    """Each change to the view and its tracking record in one transaction of the datastore, on either
    database (the subclasses give the datastore and the statements' parameter style)."""

    datastore: Any
    statements: _Statements

    def made(self, event: ClaimMade, tracking: Tracking) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            self.statements.made(cursor, event, tracking)
            self._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]

    def changed(
        self, claim_id: str, tracking: Tracking, *, start: str | None = None, live: bool | None = None
    ) -> None:
        with self.datastore.transaction(commit=True) as cursor:
            self.statements.changed(cursor, claim_id, tracking, start, live)
            self._insert_tracking(cursor, tracking)  # type: ignore[attr-defined]

    def skip(self, tracking: Tracking) -> None:
        self.insert_tracking(tracking)


class SQLiteEstimatesView(_TrackedInOneTransaction, SQLiteTrackingRecorder):
    """``EstimatesView`` in the peer's SQLite datastore."""

    statements = _Statements(":{}")

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *_TABLES]


class PostgresEstimatesView(_TrackedInOneTransaction, PostgresTrackingRecorder):
    """``EstimatesView`` in the peer's PostgreSQL datastore."""

    statements = _Statements("%({})s")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sql_create_statements.extend(SQL(s).format() for s in _TABLES)


class PeerLog(Application[uuid.UUID]):
    """The peer application whose stored events are the benchmark log."""


def _env(dialect: str, url: str) -> dict[str, str]:
    """The peer's settings for the database beside ours (SQLite: a file of its own)."""
    u = make_url(url)
    if dialect == "sqlite":
        return {"PERSISTENCE_MODULE": "eventsourcing.sqlite", "SQLITE_DBNAME": f"{u.database}.peer"}
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(u.database),
        "POSTGRES_HOST": str(u.host),
        "POSTGRES_PORT": str(u.port or 5432),
        "POSTGRES_USER": str(u.username),
        "POSTGRES_PASSWORD": u.password or "",
    }


def _stored(count: int) -> Iterator[StoredEvent]:
    versions: dict[str, int] = {}
    for event in generate(count):
        stream = stream_of(event)
        versions[stream] = version = versions.get(stream, 0) + 1
        yield StoredEvent(
            originator_id=uuid.uuid5(uuid.NAMESPACE_URL, stream),
            originator_version=version,
            topic=_TOPICS.get(type(event).__name__, _REGISTERED),
            state=encode_event(event),
        )


_TOPICS = {name: get_topic(cls) for name, cls in _CLASSES.items()}
_REGISTERED = get_topic(Registered)


def load(dialect: str, url: str, count: int) -> int:
    """Record the benchmark log's ``count`` events in the peer application (untimed setup); the last
    notification id."""
    app = PeerLog(env=_env(dialect, url))
    try:
        chunk = list(itertools.islice(stored := _stored(count), 1000))
        while chunk:
            app.recorder.insert_events(chunk)
            chunk = list(itertools.islice(stored, 1000))
        return int(app.recorder.max_notification_id() or 0)
    finally:
        app.close()


def _reset(dialect: str, env: dict[str, str]) -> None:
    """Drop the view and its tracking, so the projection starts from the first event."""
    tables = ("peer_claims", "peer_estimates", "tracking", "estimates_tracking")
    if dialect == "sqlite":
        lite = sqlite3.connect(env["SQLITE_DBNAME"], isolation_level=None)
        try:
            for table in tables:
                lite.execute(f"DROP TABLE IF EXISTS {table}")
        finally:
            lite.close()
        return
    with _pg(env) as conn:
        for table in tables:
            conn.execute(SQL("DROP TABLE IF EXISTS {}").format(Identifier(table)))


def _pg(env: dict[str, str]) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(
        dbname=env["POSTGRES_DBNAME"],
        host=env["POSTGRES_HOST"],
        port=int(env["POSTGRES_PORT"]),
        user=env["POSTGRES_USER"],
        password=env["POSTGRES_PASSWORD"],
        autocommit=True,
    )


def _sqlite_view(env: dict[str, str]) -> SQLiteEstimatesView:
    """The view on SQLite, its connections at timeline's durability (WAL, synchronous=NORMAL)."""
    factory = SQLiteFactory(Environment(EstimatesProjection.name, {**env, "CREATE_TABLE": "no"}))
    at_our_durability(factory.datastore.pool)
    view = factory.tracking_recorder(SQLiteEstimatesView)
    view.create_table()
    assert isinstance(view, SQLiteEstimatesView)
    return view


def project(dialect: str, url: str, last: int, budget: float) -> float:
    """Run the projection from the first event towards notification ``last``, for at most ``budget``
    seconds; its rate (events/s) over what it processed."""
    env = _env(dialect, url)
    _reset(dialect, env)
    start = time.perf_counter()
    if dialect == "postgresql":
        with ProjectionRunner(
            application_class=PeerLog,
            projection_class=EstimatesProjection,
            view_class=PostgresEstimatesView,
            env=env,
        ) as runner:
            # The runner's own ``wait`` polls with up to 0.8 s between looks: too coarse to time by.
            while not runner.view.has_tracking_id(runner.app_name, last):
                if time.perf_counter() - start > budget:
                    break
                time.sleep(0.01)
            done = runner.view.max_tracking_id(runner.app_name) or 0
            elapsed = time.perf_counter() - start
        return done / elapsed
    app = PeerLog(env=env)
    try:
        projection = EstimatesProjection(_sqlite_view(env))
        done = 0
        while done < last and time.perf_counter() - start < budget:
            for notification in app.recorder.select_notifications(start=done + 1, limit=100):
                event = app.mapper.to_domain_event(notification)
                projection.process_event(event, Tracking(app.name, notification.id))
                done = notification.id
        return done / (time.perf_counter() - start)
    finally:
        app.close()


def estimates(dialect: str, url: str) -> list[tuple[str, str, str, str]]:
    """The view's rows: (subject, metric, source, chosen claim)."""
    env = _env(dialect, url)
    query = "SELECT subject_id, metric, source_id, claim_id FROM peer_estimates"
    if dialect == "sqlite":
        lite = sqlite3.connect(env["SQLITE_DBNAME"])
        try:
            return [tuple(row) for row in lite.execute(query)]
        finally:
            lite.close()
    with _pg(env) as conn:
        return [tuple(row) for row in conn.execute(query)]
