from pytake_common.settings import ServiceSettings


class Settings(ServiceSettings):
    service_name: str = "conversations"
    port: int = 8004
    #: inbound messages reach the agents' realtime stream, and automation's actions (an
    #: automatic reply) reach the send path, through this consumer: a short fetch wait
    #: keeps a record from sitting on the local Tansu broker (see ``ServiceSettings``)
    kafka_consumer_fetch_max_wait_ms: int = 100
    #: WhatsApp's customer-service window: free-form replies only this long after the
    #: customer's last message (a setting only so tests and special deals can change it).
    service_window_hours: float = 24.0
    #: how often snoozed conversations whose time came are woken up
    snooze_check_interval_s: float = 5.0
    #: a campaign recipient whose contact is not in the contact replica yet (contacts'
    #: event not consumed) waits this long for it (retried each maintenance pass,
    #: ``snooze_check_interval_s``) before it is refused as ``contact_not_found``
    campaign_contact_wait_s: float = 120.0
    #: how often realtime events older than the replay window are pruned
    stream_prune_interval_s: float = 600.0
    #: ``GET /v1/conversations?sla=at_risk``: an SLA target not met that comes due within
    #: this many minutes (or is overdue without a breach reported yet)
    sla_at_risk_minutes: float = 30.0
