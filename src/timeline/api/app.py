"""The Litestar application, built by ``create_app``: routes, dependencies, settings, error mapping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.compression import CompressionConfig
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from timeline import __version__
from timeline.api import audit, document, drafts, exports, faults, live, problems, reads, viewer, writes
from timeline.api.cache import ResponseCache
from timeline.api.fanout import Hub
from timeline.api.settings import Settings
from timeline.groupcommit import Committer
from timeline.store import activity, clock, projector, tokens
from timeline.store.database import Database


def _cors(settings: Settings) -> CORSConfig | None:
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if not origins:
        return None
    return CORSConfig(
        allow_origins=origins,
        allow_methods=["GET", "POST", "PATCH", "OPTIONS"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "If-Match",
            "If-None-Match",
            "Idempotency-Key",
            "Last-Event-ID",
        ],
        expose_headers=["ETag", "Last-Modified", "Idempotent-Replayed"],
        max_age=600,
    )


def create_app(db: Database, settings: Settings | None = None) -> Litestar:
    """Build the application around a database (which the caller has migrated)."""
    settings = settings or Settings()

    async def provide_db() -> Database:
        return db

    committer = Committer(db, future_slack=settings.future_slack)
    verifier = tokens.Verifier(db)
    hub = Hub(db, verifier)
    responses = ResponseCache(clock.for_database(db), settings.response_cache_bytes)
    projections = projector.Worker(
        db, [activity], batch=settings.projection_batch, idle=settings.keepalive_seconds
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

    app = Litestar(
        route_handlers=[
            *reads.ROUTES,
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
                "projections": projections,
                "started": time.monotonic(),
            }
        ),
        plugins=[problems.plugin(faults.PROBLEMS)],
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
        cors_config=_cors(settings),
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
    document.openapi(app)
    return app
