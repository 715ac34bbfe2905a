"""Settings of the auth service (environment variables ``PYTAKE_*``)."""

import os
from typing import Self

from pydantic import Field, model_validator

from pytake_common.settings import ServiceSettings

DAY = 86_400


class Settings(ServiceSettings):
    service_name: str = "auth"
    port: int = 8001

    #: Lifetime of an access token (JWT), seconds.
    access_token_ttl_s: int = Field(default=900, ge=30, le=DAY)
    #: Idle lifetime of a refresh token: each rotation issues a new one for this long.
    refresh_token_ttl_s: int = Field(default=14 * DAY, ge=60)
    #: Absolute lifetime of a session, whatever the rotations.
    session_max_age_s: int = Field(default=30 * DAY, ge=60)
    #: Revoked or expired sessions (and their refresh tokens) are purged after this long.
    session_retention_s: int = Field(default=7 * DAY, ge=0)
    session_purge_interval_s: float = Field(default=3600.0, gt=0)

    #: Age after which the signing key is replaced (0: never rotate automatically).
    signing_key_rotation_s: int = Field(default=30 * DAY, ge=0)
    #: ``Cache-Control: max-age`` of the JWKS document.
    jwks_max_age_s: int = Field(default=300, ge=0, le=DAY)
    #: How long a replica trusts its in-memory copy of the key table.
    key_cache_s: float = Field(default=60.0, gt=0)

    #: argon2id parameters (defaults: argon2-cffi's, RFC 9106 "low memory" profile).
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_cost_kib: int = Field(default=65_536, ge=8)
    argon2_parallelism: int = Field(default=4, ge=1)
    #: Hashes computed at once (each takes ``argon2_memory_cost_kib`` of RAM).
    password_hash_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)

    @model_validator(mode="after")
    def _lifetimes_are_consistent(self) -> Self:
        if self.refresh_token_ttl_s > self.session_max_age_s:
            raise ValueError("refresh_token_ttl_s cannot exceed session_max_age_s")
        return self

    @property
    def key_publish_lead_s(self) -> float:
        """How long a new key is published before it signs (caches must see it first)."""
        return self.jwks_max_age_s + self.key_cache_s + 30

    @property
    def key_publish_tail_s(self) -> float:
        """How long a retired key stays published (tokens it signed must still verify)."""
        return self.access_token_ttl_s + self.key_cache_s + 60
