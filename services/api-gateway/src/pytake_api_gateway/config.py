"""Settings of the API gateway (env ``PYTAKE_*``)."""

from __future__ import annotations

import json
from typing import Annotated, Self

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from pytake_common.settings import ServiceSettings

MIB = 1024 * 1024


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PYTAKE_", extra="ignore", populate_by_name=True)

    service_name: str = "api-gateway"
    #: The public port: ``PYTAKE_GATEWAY_PORT`` (the contract), else ``PYTAKE_PORT``.
    port: int = Field(
        default=8000, validation_alias=AliasChoices("PYTAKE_GATEWAY_PORT", "PYTAKE_PORT")
    )

    #: The internal listener (``/metrics``, ``/readyz``, ``/healthz`` only; see
    #: internal.py): never behind the Ingress. 0 = none (then those two answer
    #: only to loopback callers that came through no proxy).
    internal_port: int = Field(
        default=0,
        ge=0,
        validation_alias=AliasChoices("PYTAKE_GATEWAY_INTERNAL_PORT", "PYTAKE_INTERNAL_PORT"),
    )

    # Upstream base URLs (scheme://host:port, no trailing slash needed).
    auth_url: str = "http://127.0.0.1:8001"
    tenants_url: str = "http://127.0.0.1:8002"
    contacts_url: str = "http://127.0.0.1:8003"
    conversations_url: str = "http://127.0.0.1:8004"
    whatsapp_url: str = "http://127.0.0.1:8005"
    integrations_url: str = "http://127.0.0.1:8008"
    automation_url: str = "http://127.0.0.1:8007"
    campaigns_url: str = "http://127.0.0.1:8006"

    #: Longest wait for an upstream's response headers, and longest silence
    #: between two reads of its body; past it the client gets 504.
    upstream_timeout_s: float = 15.0
    upstream_connect_timeout_s: float = 5.0
    #: Pooled keep-alive connections to all upstreams together.
    upstream_pool_size: int = 512
    #: Idle pooled connections are dropped after this; it must stay below the
    #: upstreams' own keep-alive (uvicorn: 5 s), or a request may be written to
    #: a connection the upstream is closing (aiohttp retries only idempotent ones).
    upstream_keepalive_s: float = 4.0
    #: Longest wait for a free pooled connection when all ``upstream_pool_size``
    #: are busy; past it the client gets 503 ``upstream_busy`` with Retry-After.
    upstream_pool_wait_s: float = 5.0
    #: Longest a client may take to accept each piece of a streamed answer
    #: (media, exports); past it the exchange is cut and the upstream
    #: connection freed, so a slow reader cannot hold one indefinitely.
    client_write_timeout_s: float = 30.0
    #: Streamed bodies in flight on each replica (large uploads such as contact
    #: imports, streamed answers such as media and exports): they hold an
    #: upstream connection for as long as the client takes, so they have their
    #: own caps, in all and per organization (503 ``streams_busy`` / 429
    #: ``too_many_streams`` past them), below ``upstream_pool_size``.
    streamed_bodies_max: int = Field(default=64, ge=1)
    streamed_bodies_per_organization: int = Field(default=4, ge=1)
    #: A streamed body must move at least this many bytes a second on average
    #: (counting only the time spent waiting on the client) once
    #: ``streamed_body_grace_s`` of waiting is used up; slower, the exchange is
    #: cut (an upload gets 408). 0 = no such rule.
    streamed_body_min_bytes_per_s: int = Field(default=64 * 1024, ge=0)
    streamed_body_grace_s: float = Field(default=10.0, ge=0)
    #: Open WebSocket streams per organization on each replica; 0 = no cap.
    ws_max_streams_per_organization: int = Field(default=200, ge=0)

    api_body_limit_bytes: int = 1 * MIB
    webhook_body_limit_bytes: int = 3 * MIB
    #: ``POST /v1/contacts/import`` only: contacts accepts CSV files up to its
    #: ``PYTAKE_IMPORT_MAX_BYTES`` (64 MiB), read here too when this is not set
    #: (one shared variable keeps the two equal).
    import_body_limit_bytes: int = Field(
        default=64 * MIB,
        validation_alias=AliasChoices("PYTAKE_IMPORT_BODY_LIMIT_BYTES", "PYTAKE_IMPORT_MAX_BYTES"),
    )

    #: Browser origins allowed by CORS: a JSON list or comma-separated; empty = no CORS.
    cors_allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    #: Verified access tokens are remembered (until their ``exp``) up to this many.
    token_cache_size: int = 10_000
    openapi_cache_ttl_s: float = 30.0
    upstream_probe_timeout_s: float = 2.0

    # Rate limits (see ratelimit.py): in-process token buckets, per replica.
    ratelimit_enabled: bool = True
    #: Public API routes (login, register, refresh, JWKS), per client address
    #: (IPv6 by /64). Not divided by the replica count: a client's keep-alive
    #: connection pins it to one replica.
    ratelimit_client_per_minute: int = 60
    ratelimit_client_burst: int = 20
    #: Authenticated routes, per organization, unless its plan sets
    #: ``api_requests_per_minute`` (then that is the rate and the burst).
    #: Burst 0 = one minute's worth.
    ratelimit_organization_per_minute: int = 600
    ratelimit_organization_burst: int = 0
    #: Organization limits are platform-wide figures: each replica enforces
    #: ``limit / ratelimit_gateway_replicas`` (an organization's many clients
    #: spread over the replicas). Set it to the number of gateway replicas.
    ratelimit_gateway_replicas: int = Field(default=1, ge=1)
    #: Meta's webhook deliveries, per client address; 0 = not limited (the
    #: default: Meta retries, but a refused delivery may be lost for good).
    #: When set, make it generous (e.g. 6000): Meta sends from few addresses.
    ratelimit_webhook_per_minute: int = 0
    ratelimit_webhook_burst: int = 0
    #: Buckets remembered per kind (least recently used forgotten first).
    ratelimit_max_keys: int = Field(default=100_000, ge=1)

    #: The gateway has no database and no workers of its own, but it follows
    #: the broker: the revocation and organization replicas (pytake_common)
    #: run only when this is on. Off, revoked sessions and suspended
    #: organizations are not refused at the edge (the services still refuse them).
    run_workers: bool = True

    @field_validator("cors_allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator(
        "auth_url",
        "tenants_url",
        "contacts_url",
        "conversations_url",
        "whatsapp_url",
        "integrations_url",
        "automation_url",
        "campaigns_url",
    )
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError("upstream URLs must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _jwks_follows_auth(self) -> Self:
        if "auth_jwks_url" not in self.model_fields_set:
            self.auth_jwks_url = f"{self.auth_url}/.well-known/jwks.json"
        return self

    def upstream_urls(self) -> dict[str, str]:
        """Upstream name -> base URL."""
        return {
            "auth": self.auth_url,
            "tenants": self.tenants_url,
            "contacts": self.contacts_url,
            "conversations": self.conversations_url,
            "whatsapp-gateway": self.whatsapp_url,
            "integrations": self.integrations_url,
            "automation": self.automation_url,
            "campaigns": self.campaigns_url,
        }
