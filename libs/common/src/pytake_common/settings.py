"""Typed settings shared by every service.

Every variable is read from the environment (``PYTAKE_*``). A service subclasses
:class:`ServiceSettings` and sets ``service_name``. Secrets are required outside
``dev``/``test`` and placeholder values are refused there, so a mis-deployed pod
fails at start-up instead of running with a guessable key.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pytake_common.pgtenant import to_asyncpg_url as to_asyncpg_url  # devstack, bench

PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "changethis", "secret", "password", "dev", "test", "xxx"}
)
Environment = Literal["dev", "test", "prod"]


def dev_secret_key(state_dir: Path) -> str:
    """Return the dev-only secret key kept under ``.pytake/``, creating it once."""
    path = state_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    return key


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PYTAKE_", extra="ignore")

    service_name: str = "service"
    env: Environment = "dev"
    state_dir: Path = Path(".pytake")
    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"
    #: Seconds uvicorn keeps an idle client connection open. Must exceed the idle
    #: timeout of whatever pools connections to this process (ingress-nginx's
    #: upstream keep-alive: 60 s; the gateway's own pool: 4 s): otherwise the server
    #: closes a connection just as the proxy sends a request on it (a 502 for a POST).
    http_keepalive_s: int = Field(default=75, ge=1)
    #: The scheduling niceness ``serve`` asks for (-20..19; None: leave it). A negative
    #: value puts the process ahead of the rest of the machine's work, which needs root
    #: or CAP_SYS_NICE; refused, the process says so and runs as it is. For a process
    #: whose work is timed to the millisecond (whatsapp-gateway's sends leave within
    #: 10 ms of their throughput slot) on a machine it shares with busy neighbours.
    process_nice: int | None = Field(default=None, ge=-20, le=19)

    database_url: str | None = None
    #: This service's own database URL; wins over everything (tests, one-off tools).
    own_database_url: str | None = None
    kafka_bootstrap: str = "127.0.0.1:9092"
    #: Tansu (local broker) answers InitProducerId with an error: idempotence is a setting.
    kafka_idempotent_producer: bool = False
    kafka_consumer_session_timeout_ms: int = 10_000
    kafka_consumer_heartbeat_ms: int = 1_000
    #: Longest a fetch waits for a record (aiokafka's default). The local Tansu broker
    #: answers a fetch by polling its storage and, even once it found records, only after
    #: sleeping part of the wait: a record sits there up to this long (one hop at 500: p50
    #: 118, p95 394 ms; at 100: 20 and 73 ms), and a busy consumer gets a batch only every
    #: ~half of it. Consumers on a reply's path set 100 (conversations, automation,
    #: whatsapp-gateway). Each idle consumer sends ~1000/this fetches a second (broker and
    #: client CPU). Apache Kafka answers as soon as a record arrives.
    kafka_consumer_fetch_max_wait_ms: int = 500
    #: The same for a process's broadcast replicas (revocations, organization policy,
    #: automation's rule versions): one group-less consumer per process, a fetch every
    #: this long when idle. Publish to effect stays well under 2 s.
    kafka_replica_fetch_max_wait_ms: int = Field(default=200, ge=1)
    consumer_max_attempts: int = 5
    consumer_retry_backoff_s: float = 0.2
    #: Records handled in one database transaction at most.
    consumer_batch_size: int = 100
    #: While records stream in (a fetch brought records less than
    #: ``consumer_linger_after_ms`` after the previous one that did), the consumer waits up
    #: to this long for more before handling what it has: a batch's transaction, inbox
    #: marks and offset commit are paid once for several records instead of once each.
    #: A record arriving after a quiet spell is handled at once. 0 turns it off.
    consumer_linger_ms: int = Field(default=20, ge=0)
    consumer_linger_after_ms: int = Field(default=100, ge=0)
    outbox_poll_interval_s: float = 1.0
    #: Retention worker (pytake_common.retention): pass interval and how long the consumer
    #: inbox (longer than the topics' 7-day retention) and Idempotency-Key answers are kept.
    retention_interval_s: float = Field(default=3600.0, gt=0)
    processed_events_retention_s: float = Field(default=14 * 86_400.0, gt=0)
    idempotency_key_retention_s: float = Field(default=48 * 3600.0, gt=0)
    outbox_batch_size: int = 200
    run_workers: bool = True
    #: After start-up, move every object to the GC's permanent generation (``gc.freeze()``):
    #: full collections then skip the imported code, the settings and the OpenAPI document.
    #: Without it a full collection walks them all with the event loop stopped (on a loaded
    #: box, sends missed their pacing slots; docs/benchmarks.md).
    gc_freeze: bool = True
    #: Whether /readyz fails while the broker is unreachable. Off by default: every
    #: service's HTTP path writes events to its outbox only, so during a broker outage
    #: the pods keep taking writes and the relay publishes them once Kafka is back.
    #: /readyz still reports the broker (``checks.broker``, ``pytake_broker_up``).
    ready_requires_broker: bool = False

    secret_key: SecretStr | None = None
    auth_jwks_url: str = "http://127.0.0.1:8001/.well-known/jwks.json"
    jwt_issuer: str = "pytake-auth"
    jwt_audience: str = "pytake"
    jwks_cache_ttl_s: float = 300.0
    db_app_role: str | None = "pytake_app"
    #: statement_timeout of API reads (GET and HEAD requests' transactions and the
    #: pooled read connections), in ms; 0 leaves the server's. Past it the read answers
    #: 503 ``statement_timeout``. Consumers, workers, migrations, writes and streamed
    #: exports are not bounded by it (docs/contributing-services.md, "Database").
    api_read_statement_timeout_ms: int = Field(default=5000, ge=0)
    otel_exporter: Literal["none", "console", "otlp"] = "none"

    @model_validator(mode="after")
    def _secrets_are_real(self) -> Self:
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if self.env == "prod":
            if key.strip().lower() in PLACEHOLDER_SECRETS or len(key) < 32:
                raise ValueError(
                    "PYTAKE_SECRET_KEY must be set to a random value of at least 32 "
                    "characters outside dev/test"
                )
        elif not key:
            self.secret_key = SecretStr(dev_secret_key(self.state_dir))
        return self

    @property
    def secret(self) -> str:
        assert self.secret_key is not None
        return self.secret_key.get_secret_value()

    def service_database_url(self) -> str:
        """The async SQLAlchemy URL of this service's own database.

        ``<SERVICE>_DATABASE_URL`` wins; otherwise the database
        ``pytake_<service>`` on the server named by ``PYTAKE_DATABASE_URL``.
        """
        if self.own_database_url:
            return to_asyncpg_url(self.own_database_url)
        env_name = self.service_name.upper().replace("-", "_") + "_DATABASE_URL"
        explicit = os.environ.get(env_name)
        if explicit:
            return to_asyncpg_url(explicit)
        if not self.database_url:
            raise ValueError(f"set PYTAKE_DATABASE_URL or {env_name}")
        db_name = "pytake_" + self.service_name.replace("-", "_")
        return to_asyncpg_url(self.database_url, database=db_name)
