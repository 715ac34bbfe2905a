from pydantic import Field

from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "automation"
    port: int = 8007
    #: inbound messages reach automation through this consumer, and an automatic reply
    #: waits for it: on the local Tansu broker a record sits up to this long in a
    #: waiting fetch (see ``ServiceSettings``; docs/operations.md)
    kafka_consumer_fetch_max_wait_ms: int = 100
    #: How often the timer worker looks for due timers (no-reply, unassigned, idle).
    timer_poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    #: Due timers claimed per poll (``FOR UPDATE SKIP LOCKED``: replicas share the work).
    timer_batch: int = Field(default=100, ge=1, le=1000)
    #: Default cap of automatic actions per conversation per minute (loop protection);
    #: an organization may lower or raise it in ``/v1/automation/settings``.
    actions_per_conversation_per_minute: int = Field(default=20, ge=1, le=1000)
    #: Compiled rule sets kept in memory (organizations); least recently used go first.
    rule_cache_size: int = Field(default=2048, ge=1)
    #: Dev and tests only: flows' HTTP nodes may call http:// and loopback addresses
    #: (an allow-listed host must still be listed; private and metadata addresses never).
    flow_http_allow_loopback: bool = False
    #: Rule runs (what automation did, and the redelivery guard) are kept this long.
    run_retention_s: float = Field(default=30 * 86_400.0, gt=0)
