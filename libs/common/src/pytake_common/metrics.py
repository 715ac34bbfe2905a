"""Prometheus metrics every service exports on ``/metrics``."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "pytake_http_requests_total", "HTTP requests handled", ["service", "method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "pytake_http_request_duration_seconds",
    "HTTP request latency",
    ["service", "method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
OUTBOX_BACKLOG = Gauge(
    "pytake_outbox_backlog", "Outbox rows not yet published to Kafka", ["service"]
)
OUTBOX_PUBLISHED = Counter(
    "pytake_outbox_published_total", "Events published by the outbox relay", ["service", "topic"]
)
OUTBOX_PUBLISH_ERRORS = Counter(
    "pytake_outbox_publish_errors_total", "Failed outbox publish attempts", ["service"]
)
OUTBOX_DEAD = Counter(
    "pytake_outbox_dead_total",
    "Outbox events the broker can never take, set aside in outbox_dead",
    ["service", "topic"],
)
BROKER_UP = Gauge(
    "pytake_broker_up",
    "Whether the last /readyz check reached a Kafka bootstrap server (1) or not (0)",
    ["service"],
)
CONSUMER_LAG = Gauge(
    "pytake_consumer_lag",
    "Records behind the partition end",
    ["service", "group", "topic", "partition"],
)
EVENTS_CONSUMED = Counter(
    "pytake_events_consumed_total",
    "Events handled by consumers",
    ["service", "group", "type", "outcome"],
)
EVENTS_DEAD_LETTERED = Counter(
    "pytake_events_dead_lettered_total", "Records sent to a DLQ", ["service", "group", "topic"]
)
