"""Metrics of the WhatsApp gateway (exported on ``/metrics`` with the common ones)."""

from prometheus_client import Counter, Histogram

#: outcome: accepted | duplicate | bad_signature | unknown_number | invalid | too_large |
#: throttled (429 before the body was read)
WEBHOOK_DELIVERIES = Counter(
    "pytake_webhook_deliveries_total", "WhatsApp webhook deliveries received", ["outcome"]
)
#: outcome: sent | failed | retried; error_code: Meta's code ("" when none, "http_5xx", "network")
SENDS = Counter(
    "pytake_whatsapp_sends_total", "Graph API send attempts by outcome", ["outcome", "error_code"]
)
#: A send was more than the leaving share of the jitter allowance after its throughput slot
#: when it woke for it (at="wakeup") or when its bytes were about to be written (at="write",
#: the event loop late between the two): it takes slots anew first (sending/pacing.py).
#: Throughput lost to a late process, never the limit.
SLOTS_MISSED = Counter(
    "pytake_whatsapp_send_slots_missed_total",
    "Throughput slots missed by late sends, by where the lateness was found",
    ["at"],
)
#: Deliveries per statement of the intake's fast path (group commit, per organization):
#: kind: messages | statuses.
WEBHOOK_WRITE_BATCH = Histogram(
    "pytake_webhook_write_batch_deliveries",
    "Webhook deliveries written together in one statement",
    ["kind"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 100),
)
