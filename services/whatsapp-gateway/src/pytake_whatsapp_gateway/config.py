from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator

from pytake_common.peers import LOOPBACK
from pytake_common.settings import ServiceSettings
from pytake_whatsapp_gateway.webhooks.parsing import DeliveryLimits


class Settings(ServiceSettings):
    service_name: str = "whatsapp-gateway"
    port: int = 8005
    #: every reply (an agent's, an automatic one) reaches the send queue through this
    #: consumer: on the local Tansu broker a record sits up to this long in a waiting
    #: fetch (see ``ServiceSettings``; docs/operations.md)
    kafka_consumer_fetch_max_wait_ms: int = 100
    #: Webhook intake only writes to the outbox: stay ready during a broker outage.
    ready_requires_broker: bool = False

    #: Base URL of Meta's Graph API (``make run`` points it at the simulator).
    graph_api_base: str = "https://graph.facebook.com"
    #: Graph API versions live about two years: keep it a setting.
    graph_api_version: str = "v21.0"
    #: The platform's Meta app secret, serving numbers registered without their own.
    platform_app_secret: SecretStr | None = None

    #: Timeout of one Graph API call (connect, write, read each).
    send_timeout_s: float = 10.0
    #: Graph calls per message before a transient error becomes a ``failed`` event.
    send_max_attempts: int = 4
    #: First retry delay; doubled per attempt, capped by ``send_retry_max_backoff_s``.
    send_retry_backoff_s: float = 0.5
    send_retry_max_backoff_s: float = 8.0
    #: A send whose Graph call got no answer (timeout after the request left) may be at
    #: Meta: it is not resent, and its outcome waits this long for Meta's status webhook
    #: (which echoes our message id) before it fails as "no answer".
    send_confirm_window_s: float = Field(default=120.0, ge=0)
    #: How long a redelivered send request waits for an in-flight send of the same message.
    send_lock_timeout_s: float = 120.0

    #: Meta's webhook bodies can reach 3 MB.
    webhook_max_body_bytes: int = 3 * 1024 * 1024
    #: What one delivery may carry (Meta sends one entry, one change, a message or a few
    #: statuses): a body past these is refused with 413 unless its signature verifies
    #: (a signed one is Meta's and is processed whatever it carries; see
    #: webhooks/screening.py). They also bound the candidates the screen collects.
    webhook_max_entries: int = Field(default=100, ge=1)
    webhook_max_changes: int = Field(default=1000, ge=1)
    webhook_max_elements: int = Field(default=5000, ge=1)
    webhook_max_numbers: int = Field(default=100, ge=1)
    #: Webhook requests refused before their signature verified, per client address:
    #: a burst, then this many per second (429 with Retry-After beyond; signed requests
    #: never count). See webhooks/throttle.py.
    webhook_refusal_burst: int = Field(default=20, ge=1)
    webhook_refusal_per_s: float = Field(default=1.0, gt=0)
    #: Webhook requests naming no connected number, per client address, when no platform
    #: app secret is configured to check their signature: a burst, then this many per
    #: second (429 beyond). With a platform app secret they must verify against it instead.
    webhook_unknown_burst: int = Field(default=10, ge=1)
    webhook_unknown_per_s: float = Field(default=0.5, gt=0)
    #: Direct peers whose ``X-Forwarded-For`` is believed (its first entry is the client):
    #: the API gateway's pods.
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=lambda: LOOPBACK)

    #: Sends in flight at once per replica (each holds up to two database connections).
    send_concurrency: int = Field(default=16, ge=1, le=256)
    #: The send dispatcher wakes on a NOTIFY for each new request, when one of its sends
    #: ends and when a requeued request falls due; this slow look at the queue is only
    #: the fallback (a lost notification, another replica's requeued or expired request).
    send_poll_interval_s: float = Field(default=1.0, gt=0)
    #: A taken send request's lease: its dispatcher renews it every third of this while
    #: the send lives (pacing waits, Meta slow, retries), so a request returns to the
    #: queue at most this long after its dispatcher's process died (sending/dispatcher.py).
    send_lease_s: float = Field(default=15.0, gt=0)
    #: Sends of a number are spaced (1 + this) / throughput seconds apart, so calls
    #: whose arrival at Meta varies by up to this much (a third for leaving late, the
    #: rest for travelling; see sending/pacing.py) never put more than the limit into any
    #: one-second window there (80/s -> about 77.7/s).
    pace_jitter_allowance_s: float = Field(default=0.03, ge=0, le=1.0)
    #: A number's next slot is at least this far ahead of the claim taking it, so the
    #: claim commits and its caller wakes in time (a burst into an idle schedule used to
    #: miss its first slots); only delays the first send after an idle spell.
    send_slot_lead_s: float = Field(default=0.05, ge=0, le=1.0)
    #: Automation and campaign sends of a number in flight at most: this many seconds of
    #: its throughput (at least one). An agent's reply waits behind no more than these
    #: (each holds a slot of the number's schedule), while enough stay in flight to keep
    #: the number at its limit (a send takes tens of milliseconds besides its slot).
    send_background_ahead_s: float = Field(default=0.15, gt=0, le=5.0)
    #: Meta's pair rate: one message per this many seconds to the same customer
    #: (0 turns pacing per recipient off) ...
    pair_interval_s: float = Field(default=6.0, ge=0)
    #: ... after a burst of this many messages.
    pair_burst: int = Field(default=10, ge=1)

    #: How often the template worker re-reads every WABA's templates from Meta (0: never).
    template_sync_interval_s: float = Field(default=3600.0, ge=0)

    #: Raw webhook deliveries (customer payloads) are deleted after this long. Duplicates
    #: are caught by the per-message tables, so this is a privacy choice, not dedupe.
    webhook_delivery_retention_s: float = Field(default=14 * 86_400.0, gt=0)

    #: Where fetched inbound media are kept: a local directory or an S3-compatible bucket.
    media_storage: Literal["local", "s3"] = "local"
    #: The local directory (default: <state_dir>/media).
    media_dir: Path | None = None
    #: The bucket (``media_storage=s3``); objects are ``<prefix><organization>/<sha256>``.
    media_s3_bucket: str | None = None
    media_s3_prefix: str = ""
    #: Endpoint of an S3-compatible store (MinIO, R2, ...); unset: AWS S3.
    media_s3_endpoint_url: str | None = None
    media_s3_region: str | None = None
    #: Explicit credentials; unset: the standard AWS chain (env, files, web identity, role).
    media_s3_access_key_id: SecretStr | None = None
    media_s3_secret_access_key: SecretStr | None = None
    #: ``path`` for stores without virtual-host buckets (MinIO by default).
    media_s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"
    #: Multipart part size: the memory one media upload holds at most (S3's minimum is 5 MiB).
    media_s3_part_size_bytes: int = Field(default=8 * 1024 * 1024, ge=5 * 1024 * 1024)
    #: Largest inbound media fetched (WhatsApp's documents go up to 100 MB).
    media_max_bytes: int = 100 * 1024 * 1024
    media_max_attempts: int = 5
    media_poll_interval_s: float = 1.0

    def delivery_limits(self) -> DeliveryLimits:
        return DeliveryLimits(
            entries=self.webhook_max_entries,
            changes=self.webhook_max_changes,
            elements=self.webhook_max_elements,
            numbers=self.webhook_max_numbers,
        )

    def media_root(self) -> Path:
        return self.media_dir or self.state_dir / "media"

    @model_validator(mode="after")
    def _media_storage_complete(self) -> Self:
        if self.media_storage == "s3" and not self.media_s3_bucket:
            raise ValueError("PYTAKE_MEDIA_STORAGE=s3 needs PYTAKE_MEDIA_S3_BUCKET")
        if (self.media_s3_access_key_id is None) != (self.media_s3_secret_access_key is None):
            raise ValueError(
                "set both PYTAKE_MEDIA_S3_ACCESS_KEY_ID and PYTAKE_MEDIA_S3_SECRET_ACCESS_KEY "
                "or neither (the standard AWS credential chain)"
            )
        return self
