"""OpenTelemetry tracing with W3C context across HTTP calls and Kafka headers."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

_configured = False


def configure_tracing(service: str, exporter: str = "none") -> None:
    """Install a tracer provider once per process; ``exporter`` picks where spans go."""
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": f"pytake-{service}"}))
    if exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    elif exporter == "otlp":  # pragma: no cover - needs the optional OTLP exporter package
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
            OTLPSpanExporter,
        )

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _configured = True


@functools.cache
def tracer(name: str = "pytake") -> trace.Tracer:
    """The process's tracer, built once (``get_tracer`` allocates on every call)."""
    return trace.get_tracer(name)


def inject_headers() -> dict[str, str]:
    """W3C ``traceparent``/``tracestate`` of the current span, for HTTP or Kafka."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def kafka_headers(carrier: Mapping[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in carrier.items()]


def context_from_kafka(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    carrier = {k: v.decode(errors="replace") for k, v in (headers or ())}
    return propagate.extract(carrier)
