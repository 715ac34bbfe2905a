"""Events tenants publishes (topic ``pytake.tenants.organization``)."""

import uuid

from pytake_common.events import EventData

TOPIC = "pytake.tenants.organization"


class OrganizationCreated(EventData):
    event_type = "pytake.tenants.organization.created.v1"
    topic = TOPIC

    organization_id: uuid.UUID
    name: str
    slug: str
    plan: str
    status: str
    created_by: uuid.UUID | None


class OrganizationUpdated(EventData):
    event_type = "pytake.tenants.organization.updated.v1"
    topic = TOPIC

    organization_id: uuid.UUID
    name: str
    slug: str
    plan: str
    status: str
