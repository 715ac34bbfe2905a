"""OpenTelemetry tracing with W3C context across HTTP calls and Kafka headers."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

_configured = False
SAMPLED, RANDOM = TraceFlags.SAMPLED, TraceFlags.RANDOM_TRACE_ID


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


#: the SDK's own generator: the ids a recorded span would get
_IDS = RandomIdGenerator()


def unrecorded_span(parent: otel_context.Context) -> NonRecordingSpan:
    """What a server span started under ``parent`` carries, when no span is exported.

    The client's trace continued (or a new one) with a fresh span id, sampled as the
    SDK's default ``ParentBased(ALWAYS_ON)`` sampler decides, so ``traceparent``
    headers, Kafka headers and log lines read the same; building it costs a fraction
    of a recorded SDK span that no processor would ever see.
    """
    remote = trace.get_current_span(parent).get_span_context()
    if remote.is_valid:
        flags = (SAMPLED if remote.trace_flags.sampled else 0) | (
            RANDOM if remote.trace_flags.random_trace_id else 0
        )
        ids = SpanContext(
            remote.trace_id, _IDS.generate_span_id(), False, TraceFlags(flags), remote.trace_state
        )
    else:  # a new trace: its id is random, and the flags say so
        ids = SpanContext(
            _IDS.generate_trace_id(), _IDS.generate_span_id(), False, TraceFlags(SAMPLED | RANDOM)
        )
    return NonRecordingSpan(ids)
