"""The Litestar application, built by ``create_app``: routes, dependencies, settings, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from timeline import __version__
from timeline.api import (
    audit,
    catalog,
    conventions,
    docs,
    document,
    drafts,
    exports,
    faults,
    live,
    observe,
    problems,
    reads,
    viewer,
    writes,
)
from timeline.api.cache import ResponseCache
from timeline.api.fanout import Hub
from timeline.api.settings import Settings
from timeline.app import maintenance
from timeline.groupcommit import Committer
from timeline.store import clock, tokens
from timeline.store.database import Database

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send


class _App(Litestar):
    """Litestar, with every HTTP request (routed or not) given an id and an access line, and the
    conventions of ``conventions`` (CORS in two tiers, HEAD) applied before routing."""

    cors = conventions.Policy.of("", public_reads=True)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await observe.handle(self._conventions, scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def _conventions(self, scope: Scope, receive: Receive, send: Send) -> None:
        await conventions.handle(self.cors, self._litestar, scope, receive, send)  # type: ignore[arg-type]

    async def _litestar(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


def create_app(
    db: Database,
    settings: Settings | None = None,
    *,
    tracer_provider: Any = None,
    appended_on_start: int = 0,
) -> Litestar:
    """Build the application around a database (which the caller has migrated); ``tracer_provider`` (an
    OpenTelemetry SDK TracerProvider) traces requests, as does ``settings.tracing``; ``appended_on_start``
    counts events this process appended before the app (serve's import of fixtures) in its metrics."""
    settings = settings or Settings()

    async def provide_db() -> Database:
        return db

    verifier = tokens.Verifier(db)
    hub = Hub(db, verifier)
    responses = ResponseCache(clock.for_database(db), settings.response_cache_bytes)
    metrics = observe.Metrics(db, hub, responses)
    metrics.events_appended.inc(appended_on_start)
    committer = Committer(db, future_slack=settings.future_slack, on_commit=metrics.committed)
    plugins = []
    before_request = None
    if settings.tracing and tracer_provider is None:
        # Imported only when asked for: its packages are the optional extra timeline[tracing].
        from timeline.api import tracing  # noqa: PLC0415

        tracer_provider = tracing.provider(settings.tracing)
    if tracer_provider is not None:
        from timeline.api import tracing  # noqa: PLC0415

        plugins.append(tracing.plugin(tracer_provider))
        before_request = tracing.name_span
    projections = maintenance.projection_worker(
        db, batch=settings.projection_batch, idle=settings.keepalive_seconds
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        # On PostgreSQL, commits made by other processes wake this process's event streams too.
        listener = db.listener()
        if listener is not None:
            await listener.start()
        # Asynchronous projections run in whichever process leads them (an advisory lock on PostgreSQL).
        worker = asyncio.create_task(projections.run(), name="projections")
        try:
            yield
        finally:
            await hub.close()
            await committer.close()
            await verifier.close()
            await responses.clock.close()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            if listener is not None:
                await listener.stop()
            await db.dispose()
            if tracer_provider is not None:
                tracer_provider.shutdown()  # sends the spans still batched

    app = _App(
        route_handlers=[
            *observe.ROUTES,
            *docs.ROUTES,
            *reads.ROUTES,
            *catalog.ROUTES,
            *exports.ROUTES,
            *writes.ROUTES,
            *audit.ROUTES,
            *live.ROUTES,
            *viewer.ROUTES,
            *drafts.ROUTES,
        ],
        dependencies={"db": Provide(provide_db)},
        state=State(
            {
                "db": db,
                "settings": settings,
                "committer": committer,
                "response_cache": responses,
                "tokens": verifier,
                "hub": hub,
                "metrics": metrics,
                "projections": projections,
                "started": time.monotonic(),
            }
        ),
        middleware=[observe.http_metrics],
        plugins=[problems.plugin(faults.PROBLEMS), *plugins],
        before_request=before_request,
        # Logging is set up once per process by timeline.logs (structlog), not by each app.
        logging_config=None,
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        compression_config=CompressionConfig(
            backend="brotli",
            brotli_gzip_fallback=True,
            minimum_size=1024,
            # Each event is encoded once for every stream; compressing it again for each would undo that.
            exclude="^/events/stream",
        ),
        openapi_config=OpenAPIConfig(
            title="timeline",
            version=__version__,
            render_plugins=[docs.RENDER],
            description=(
                "An event-sourced ledger of attributed claims. Reads are public unless configured "
                "otherwise; writes need a bearer token with the `write` scope, imports and rebuilds `admin`."
            ),
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
            security=[{"bearer": []}],
            tags=[
                Tag(name="subjects", description="Subjects, their estimates and timelines"),
                Tag(name="claims", description="Claims, everything that happens to them, their history"),
                Tag(name="sources", description="Sources and the fate of their claims"),
                Tag(name="documents", description="Documents that report claims"),
                Tag(name="log", description="The event log itself, and imports"),
                Tag(name="exports", description="TimelineJS, schema.org JSON-LD and CSV"),
                Tag(name="audit", description="The hash chain: head and verification"),
                Tag(name="viewer", description="The built-in page"),
                Tag(name="service", description="Health and maintenance"),
            ],
        ),
    )
    app.cors = conventions.Policy.of(settings.cors_origins, public_reads=settings.public_reads)
    document.openapi(app)
    return app
