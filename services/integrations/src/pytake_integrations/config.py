from typing import Self

from pydantic import Field, model_validator

from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "integrations"
    port: int = 8008
    #: Dev only (``make run``): endpoints may be ``http://`` and resolve to loopback, so
    #: a receiver on the laptop works. Private, link-local, multicast and metadata
    #: addresses stay refused. Refused outright when ``env`` is ``prod``.
    webhooks_allow_loopback: bool = False
    #: Longest a receiver has to answer one delivery attempt.
    delivery_timeout_s: float = Field(default=10.0, gt=0, le=60)
    #: Attempts of one endpoint in flight at once (a hanging receiver holds at most these).
    endpoint_concurrency: int = Field(default=4, ge=1, le=64)
    #: Deliveries of one endpoint claimed at once per process, in flight or waiting here for
    #: one of its ``endpoint_concurrency`` slots (so a freed slot never waits for the
    #: database). Each conversation has at most one: this is also how many of an
    #: endpoint's conversations move at once. At least ``endpoint_concurrency``.
    endpoint_window: int = Field(default=64, ge=1, le=1024)
    #: Attempts in flight across every endpoint, per process.
    delivery_concurrency: int = Field(default=64, ge=1, le=1024)
    #: Retries: exponential from ``retry_base_s`` (x2 per attempt, up to ``retry_max_delay_s``,
    #: with jitter) until ``retry_window_s`` after the event; then the delivery failed.
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_max_delay_s: float = Field(default=3600.0, gt=0)
    retry_window_s: float = Field(default=24 * 3600.0, gt=0)
    #: An endpoint failing without a single success for this long, over at least
    #: ``auto_disable_min_failures`` attempts, is disabled with a visible reason.
    auto_disable_after_s: float = Field(default=24 * 3600.0, gt=0)
    auto_disable_min_failures: int = Field(default=10, ge=1)
    #: After a secret rotation the previous secret also signs for this long by default.
    rotation_overlap_s: int = Field(default=24 * 3600, ge=0, le=7 * 86_400)
    #: How long the delivery log is kept.
    delivery_log_retention_s: float = Field(default=30 * 86_400.0, gt=0)
    #: Fallback poll of the delivery queue (a NOTIFY wakes the worker at once).
    delivery_poll_interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _loopback_is_dev_only(self) -> Self:
        if self.env == "prod" and self.webhooks_allow_loopback:
            raise ValueError("PYTAKE_WEBHOOKS_ALLOW_LOOPBACK is a dev-only setting")
        return self
