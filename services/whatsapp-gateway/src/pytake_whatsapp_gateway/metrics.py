"""Metrics of the WhatsApp gateway (exported on ``/metrics`` with the common ones)."""

from prometheus_client import Counter

#: outcome: accepted | duplicate | bad_signature | unknown_number | invalid | too_large |
#: throttled (429 before the body was read)
WEBHOOK_DELIVERIES = Counter(
    "pytake_webhook_deliveries_total", "WhatsApp webhook deliveries received", ["outcome"]
)
#: outcome: sent | failed | retried; error_code: Meta's code ("" when none, "http_5xx", "network")
SENDS = Counter(
    "pytake_whatsapp_sends_total", "Graph API send attempts by outcome", ["outcome", "error_code"]
)
#: A send left more than half the jitter allowance after its throughput slot and took
#: another (sending/pacing.py): throughput lost to a late process, never the limit.
SLOTS_MISSED = Counter(
    "pytake_whatsapp_send_slots_missed_total", "Throughput slots missed by late sends"
)
