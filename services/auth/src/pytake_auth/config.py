"""Settings of the auth service (environment variables ``PYTAKE_*``)."""

import os
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Self

from pydantic import Field, model_validator

from pytake_common.settings import ServiceSettings

DAY = 86_400

#: (limit, window in seconds) of one throttle rule.
Rule = tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]

#: OWASP Password Storage Cheat Sheet, argon2id (memory KiB, iterations), parallelism 1;
#: each line is equally strong.
OWASP_ARGON2ID = ((47_104, 1), (19_456, 2), (12_288, 3), (9_216, 4), (7_168, 5))


def argon2_is_owasp_compliant(memory_kib: int, time_cost: int, parallelism: int) -> bool:
    """At least as costly as one OWASP configuration (more lanes split, not add, memory)."""
    if parallelism < 1:
        return False
    return any(memory_kib >= m and time_cost >= t for m, t in OWASP_ARGON2ID)


class Settings(ServiceSettings):
    service_name: str = "auth"
    port: int = 8001

    #: Lifetime of an access token (JWT), seconds: a user's, and an API client's (which
    #: gets no refresh token and asks again; never beyond the client's ``expires_at``).
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

    #: argon2id parameters. Default: OWASP's m=7 MiB, t=5, p=1 line, as strong as its
    #: others and the fastest of them here (7 MiB stays in cache: 9.1 ms per verify against
    #: 16.2 ms for m=19 MiB, t=2 in the last ``bench/auth_login.py`` run).
    #: Outside dev/test they must match or exceed one of :data:`OWASP_ARGON2ID`.
    argon2_time_cost: int = Field(default=5, ge=1)
    argon2_memory_cost_kib: int = Field(default=7_168, ge=8)
    argon2_parallelism: int = Field(default=1, ge=1)
    #: Hashes computed at once (each takes ``argon2_memory_cost_kib`` of RAM).
    password_hash_concurrency: int = Field(default_factory=lambda: os.cpu_count() or 2, ge=1)

    #: Direct peers whose ``X-Forwarded-For`` is believed (its first entry is the client).
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=lambda: [ip_network("127.0.0.1/32"), ip_network("::1/128")]
    )
    #: Throttle (sliding windows in PostgreSQL, shared by every replica): ``(limit, window_s)``.
    #: Failed logins (and failed current-password checks) per (e-mail, client source):
    #: the guesser is stopped, nobody else.
    throttle_login_failures_per_source: Rule = (5, 900)
    #: Failed logins per e-mail, applied only to sources whose network (/24 IPv4, /48
    #: IPv6) failed against it: guessing from many networks gets about one try per
    #: network, the owner's fresh source elsewhere passes.
    throttle_login_failures_per_email: Rule = (5, 900)
    #: Failed logins per e-mail from any source: bounds guessing from a botnet
    #: (reaching it takes about this many networks). Applies to every source but
    #: those that signed in to the e-mail before (see below).
    throttle_login_failures_ceiling: Rule = (100, 900)
    #: How long a source (IPv4 address, IPv6 /64) that signed in to an e-mail stays
    #: exempt from that e-mail's per-e-mail limit and ceiling (renewed at each sign-in).
    throttle_login_known_source_ttl_s: int = Field(default=90 * 86400, ge=1)
    #: Every login attempt per client address (an IPv6 client's /64).
    throttle_login_per_address: Rule = (20, 60)
    #: Registrations per client address and per e-mail.
    throttle_register_per_address: Rule = (5, 3600)
    throttle_register_per_email: Rule = (5, 3600)
    #: Refreshes per client address and per user.
    throttle_refresh_per_address: Rule = (30, 60)
    throttle_refresh_per_user: Rule = (30, 60)
    #: Client-credentials token requests (``POST /v1/auth/token``) per client address
    #: (every attempt) and per client (attempts that name an existing client).
    throttle_token_per_address: Rule = (60, 60)
    throttle_token_per_client: Rule = (30, 60)
    #: Switch the throttle off entirely (load tests on loopback only; refused in prod).
    throttle_enabled: bool = True

    @model_validator(mode="after")
    def _lifetimes_are_consistent(self) -> Self:
        if self.refresh_token_ttl_s > self.session_max_age_s:
            raise ValueError("refresh_token_ttl_s cannot exceed session_max_age_s")
        return self

    @model_validator(mode="after")
    def _production_is_hardened(self) -> Self:
        if self.env != "prod":
            return self
        if not argon2_is_owasp_compliant(
            self.argon2_memory_cost_kib, self.argon2_time_cost, self.argon2_parallelism
        ):
            raise ValueError(
                "argon2 parameters are below OWASP's argon2id guidance "
                "(e.g. m=19456 KiB, t=2, p=1 or m=47104 KiB, t=1, p=1)"
            )
        if not self.throttle_enabled:
            raise ValueError("the throttle cannot be disabled in prod")
        return self

    @property
    def key_publish_lead_s(self) -> float:
        """How long a new key is published before it signs (caches must see it first)."""
        return self.jwks_max_age_s + self.key_cache_s + 30

    @property
    def key_publish_tail_s(self) -> float:
        """How long a retired key stays published (tokens it signed must still verify)."""
        return self.access_token_ttl_s + self.key_cache_s + 60
