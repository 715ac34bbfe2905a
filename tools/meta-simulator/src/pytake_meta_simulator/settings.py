"""Simulator settings, read from ``PYTAKE_SIMULATOR_*`` environment variables.

Host and port fall back to the platform-wide ``PYTAKE_HOST``/``PYTAKE_PORT``
(what docker-compose and the Kubernetes service template set) when the
``PYTAKE_SIMULATOR_`` variables are absent; the specific ones win.
"""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PYTAKE_SIMULATOR_", extra="ignore", populate_by_name=True
    )

    host: str = Field(
        default="127.0.0.1",
        validation_alias=AliasChoices("PYTAKE_SIMULATOR_HOST", "PYTAKE_HOST"),
    )
    port: int = Field(
        default=8010,
        ge=0,
        le=65535,
        validation_alias=AliasChoices("PYTAKE_SIMULATOR_PORT", "PYTAKE_PORT"),
    )
    #: Where webhooks go unless a number was registered with its own ``webhook_url``.
    webhook_url: str = "http://127.0.0.1:8000/webhooks/whatsapp"
    #: Pause before each of the ``sent``/``delivered``/``read`` status webhooks.
    status_delay_s: float = Field(default=0.05, ge=0)
    #: Post ``sent``/``delivered``/``read`` status webhooks after each accepted send
    #: (off for load benchmarks that measure only the Graph API side).
    send_statuses: bool = True
    #: Meta retries a status webhook that was not answered 2xx, with backoff, for days
    #: (../shared/WHATSAPP.md): the first retry this long after, each next one twice as
    #: long after the last (at most ``status_retry_max_interval_s``), for at most
    #: ``status_retry_for_s`` in all (0: no retries). The same bytes, recorded as
    #: ``redelivery``; the message's next status waits for them.
    status_retry_first_s: float = Field(default=1.0, gt=0)
    status_retry_max_interval_s: float = Field(default=30.0, gt=0)
    status_retry_for_s: float = Field(default=3600.0, ge=0)
    #: Timeout of one outbound webhook POST.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    log_level: str = "info"
    #: In its own process (``python -m``): full garbage collections only between requests
    #: (``arrivals.QuietCollector``); false: CPython's own schedule, to measure what that
    #: does to the arrival stamps (``/_sim/loop-lag`` lists every full collection).
    quiet_gc: bool = True
