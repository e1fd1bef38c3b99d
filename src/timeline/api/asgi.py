"""The application for ASGI servers that import it by name (``timeline serve --workers N`` runs one per
worker process), configured from the environment."""

from __future__ import annotations

import os

from litestar import Litestar

from timeline import heap, logs, signing
from timeline.api.app import create_app
from timeline.api.settings import Settings
from timeline.store import DEFAULT_URL
from timeline.store.database import Database

# The events `timeline serve` appended by importing fixtures before starting the app in its own process: the
# app's counter of appended events starts there (see ``create``).
APPENDED_ON_START = "TIMELINE_APPENDED_ON_START"


def create() -> Litestar:
    """An app on TIMELINE_DATABASE_URL with settings from the environment."""
    # A worker process of `serve --workers N` starts with logging unconfigured.
    fmt = os.environ.get("TIMELINE_LOG_FORMAT", "text")
    logs.configure("json" if fmt == "json" else "text", os.environ.get("TIMELINE_LOG_LEVEL", "info"))
    settings = Settings.from_env()
    url = os.environ.get("TIMELINE_DATABASE_URL", DEFAULT_URL)
    # `timeline serve` has checked the key already; a worker only reads it.
    signer = signing.from_env()
    database = Database(
        url, pool_size=settings.database_pool, signer=signer, lock_timeout=settings.lock_wait_seconds
    )
    # Taken by the first app of the process only: the import was this process's, and counted once.
    appended = int(os.environ.pop(APPENDED_ON_START, "0"))
    app = create_app(database, settings, appended_on_start=appended)
    heap.freeze()
    return app
