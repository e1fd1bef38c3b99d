"""Settings of the HTTP service, read from the environment by ``Settings.from_env``."""

from __future__ import annotations

import datetime as dt
import os

import msgspec


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """How the API behaves; every field has an environment variable (TIMELINE_ + its name in capitals)."""

    # Reads need no token unless this is false; then they need the `read` scope.
    public_reads: bool = True
    # Request bodies above this many bytes get 413 and are not read.
    max_body_bytes: int = 1_000_000
    # POST /drafts reads at most this many bytes of article (drafting's work grows with the text).
    draft_max_bytes: int = 200_000
    # Seconds a draft, the parsing of an imported fixture or a rebuild may take (off the loop) before 408.
    work_timeout_seconds: float = 30.0
    # How far past today a stated date may be (time zones, editing late at night).
    future_slack_days: int = 1
    # Seconds between keep-alive comments on idle event streams (and re-reads of the log).
    keepalive_seconds: float = 15.0
    # Origins allowed to call the API from a browser (CORS), comma-separated; empty: none, "*": any.
    cors_origins: str = ""
    # Database connections each server process keeps (requests beyond it wait for one).
    database_pool: int = 20
    # Seconds a write waits for the log's write lock (held by an import, say) before answering 503 with
    # Retry-After, rather than keeping its client and every write queued behind it waiting.
    lock_wait_seconds: float = 5.0
    # Events an asynchronous projection applies per transaction.
    projection_batch: int = 500
    # /health calls an asynchronous projection stalled (503) when the event after its position was recorded
    # this many seconds ago and the projection has not moved for as long.
    stall_seconds: float = 60.0
    # Bytes of encoded read responses kept in memory, each valid while the views stay where it was built;
    # 0 turns the cache off.
    response_cache_bytes: int = 64 * 1024 * 1024
    # OpenTelemetry tracing: "" (off), "console" (spans on standard output) or "otlp" (to a collector named by
    # OTEL_EXPORTER_OTLP_ENDPOINT); needs the optional extra timeline[tracing].
    tracing: str = ""

    @property
    def future_slack(self) -> dt.timedelta:
        """``future_slack_days`` as a timedelta."""
        return dt.timedelta(days=self.future_slack_days)

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the environment: TIMELINE_PUBLIC_READS, TIMELINE_MAX_BODY_BYTES and so on."""
        values: dict[str, str] = {}
        for name in cls.__struct_fields__:
            raw = os.environ.get(f"TIMELINE_{name.upper()}")
            if raw is not None:
                values[name] = raw
        return msgspec.convert(values, cls, strict=False)
