"""Simulator settings, read from ``PYTAKE_SIMULATOR_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PYTAKE_SIMULATOR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8010, ge=0, le=65535)
    #: Where webhooks go unless a number was registered with its own ``webhook_url``.
    webhook_url: str = "http://127.0.0.1:8000/webhooks/whatsapp"
    #: Pause before each of the ``sent``/``delivered``/``read`` status webhooks.
    status_delay_s: float = Field(default=0.05, ge=0)
    #: Timeout of one outbound webhook POST.
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    log_level: str = "info"
