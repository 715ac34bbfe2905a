from pydantic import SecretStr

from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "whatsapp-gateway"
    port: int = 8005
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
    #: How long a redelivered send request waits for an in-flight send of the same message.
    send_lock_timeout_s: float = 120.0

    #: Meta's webhook bodies can reach 3 MB.
    webhook_max_body_bytes: int = 3 * 1024 * 1024
