"""Events integrations publishes, on ``pytake.integrations.endpoint`` (subject: endpoint id).

None of them carries a signing secret, encrypted or not.
"""

import uuid
from datetime import datetime

from pytake_common.events import EventData

TOPIC = "pytake.integrations.endpoint"


class IntegrationsEvent(EventData):
    """An event integrations publishes."""

    service = "integrations"


class EndpointState(IntegrationsEvent):
    """An endpoint's current, secret-free state."""

    endpoint_id: uuid.UUID
    organization_id: uuid.UUID
    url: str
    event_types: list[str]
    status: str


class EndpointCreated(EndpointState):
    event_type = "pytake.integrations.endpoint.created.v1"
    topic = TOPIC

    created_by: uuid.UUID | None


class EndpointUpdated(EndpointState):
    """URL, subscriptions, description or status (enabled/disabled by an admin) changed."""

    event_type = "pytake.integrations.endpoint.updated.v1"
    topic = TOPIC

    updated_by: uuid.UUID | None


class EndpointSecretRotated(IntegrationsEvent):
    """A new signing secret; the previous one still signs until ``previous_expires_at``."""

    event_type = "pytake.integrations.endpoint.secret_rotated.v1"
    topic = TOPIC

    endpoint_id: uuid.UUID
    organization_id: uuid.UUID
    previous_expires_at: datetime | None
    rotated_by: uuid.UUID | None


class EndpointDisabled(IntegrationsEvent):
    """Deliveries stopped by the platform: the receiver answered 410 Gone, or failed for a day."""

    event_type = "pytake.integrations.endpoint.disabled.v1"
    topic = TOPIC

    endpoint_id: uuid.UUID
    organization_id: uuid.UUID
    reason: str
    disabled_at: datetime


class EndpointDeleted(IntegrationsEvent):
    event_type = "pytake.integrations.endpoint.deleted.v1"
    topic = TOPIC

    endpoint_id: uuid.UUID
    organization_id: uuid.UUID
    deleted_by: uuid.UUID | None
