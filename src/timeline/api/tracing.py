"""OpenTelemetry tracing through Litestar's plugin, for ``TIMELINE_TRACING=console|otlp``.

Its packages are the optional extra ``timeline[tracing]``: this module is imported only when tracing is on.
The OTLP exporter reads the usual OTEL_EXPORTER_OTLP_* variables (endpoint, headers).
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

from timeline import __version__

KINDS = ("console", "otlp")


def provider(kind: str) -> TracerProvider:
    """A tracer provider that sends spans to standard output (``console``) or an OTLP collector."""
    processor: SpanProcessor
    if kind == "console":
        processor = SimpleSpanProcessor(ConsoleSpanExporter())
    elif kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # noqa: PLC0415 (its own extra)
            OTLPSpanExporter,
        )

        processor = BatchSpanProcessor(OTLPSpanExporter())
    else:
        raise ValueError(f"TIMELINE_TRACING must be one of {', '.join(KINDS)} or empty, not {kind!r}")
    traced = TracerProvider(
        resource=Resource.create({"service.name": "timeline", "service.version": __version__})
    )
    traced.add_span_processor(processor)
    return traced


async def name_span(request: Request[Any, Any, Any]) -> None:
    """Name the request's span by its route template, as the metrics are labelled (one name per route,
    not one per URL). Litestar's plugin starts the span before routing, when only the path is known."""
    route = request.scope.get("path_template")
    if route:
        span = trace.get_current_span()
        span.update_name(f"{request.method} {route}")
        span.set_attribute("http.route", route)


def plugin(traced: TracerProvider) -> OpenTelemetryPlugin:
    """Litestar's plugin: one span per request (not for /metrics)."""
    return OpenTelemetryPlugin(OpenTelemetryConfig(tracer_provider=traced, exclude=["^/metrics$"]))
