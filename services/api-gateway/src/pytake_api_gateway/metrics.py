"""Gateway-only Prometheus metrics (request counts and latency come from pytake_common)."""

from __future__ import annotations

from prometheus_client import Counter

UPSTREAM_ERRORS = Counter(
    "pytake_gateway_upstream_errors_total",
    "Requests the gateway could not complete against an upstream",
    ["upstream", "kind"],
)
