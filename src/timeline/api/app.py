"""The Litestar application, built by ``create_app``: routes, dependencies, settings, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme, Tag

from timeline import __version__
from timeline.api import audit, reads, writes
from timeline.api.problems import HANDLERS
from timeline.api.settings import Settings
from timeline.store.database import Database


def create_app(db: Database, settings: Settings | None = None) -> Litestar:
    """Build the application around a database (which the caller has migrated)."""
    settings = settings or Settings()

    async def provide_db() -> Database:
        return db

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await db.dispose()

    return Litestar(
        route_handlers=[*reads.ROUTES, *writes.ROUTES, *audit.ROUTES],
        dependencies={"db": Provide(provide_db)},
        state=State({"db": db, "settings": settings}),
        exception_handlers=HANDLERS,
        lifespan=[lifespan],
        request_max_body_size=settings.max_body_bytes,
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
                Tag(name="audit", description="The hash chain: head and verification"),
                Tag(name="service", description="Health and maintenance"),
            ],
        ),
    )
