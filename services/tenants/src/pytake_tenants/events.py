"""Events tenants publishes.

Topics: ``pytake.tenants.organization`` (subject and tenantid = organization id)
and ``pytake.tenants.department`` (subject = department id). Every service keeps
a replica of organizations' status, plan and limits from the first topic.
"""

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pytake_common.events import EventData

TOPIC = "pytake.tenants.organization"
DEPARTMENT_TOPIC = "pytake.tenants.department"

LimitsField = dict[str, int | None]
LIMITS_DESCRIPTION = (
    "limit name -> allowed amount (null = unlimited): agents, numbers, contacts, departments, "
    "monthly_business_messages, api_requests_per_minute, webhook_endpoints, campaigns, "
    "monthly_campaign_recipients"
)


class TenantsEvent(EventData):
    """An event tenants publishes."""

    service = "tenants"


class OrganizationCreated(TenantsEvent):
    """An organization exists (created from auth's registration event)."""

    event_type = "pytake.tenants.organization.created.v1"
    topic = TOPIC

    organization_id: uuid.UUID
    name: str
    slug: str
    plan: str
    status: str
    created_by: uuid.UUID | None
    limits: LimitsField = Field(default_factory=dict, description=LIMITS_DESCRIPTION)
    trial_ends_at: datetime | None = None


class OrganizationUpdated(TenantsEvent):
    """Name, slug or settings changed (settings: timezone, business hours, messages...)."""

    event_type = "pytake.tenants.organization.updated.v1"
    topic = TOPIC

    organization_id: uuid.UUID
    name: str
    slug: str
    plan: str
    status: str
    settings: dict[str, Any] | None = None


class OrganizationPlanChanged(TenantsEvent):
    """The plan (hence the limits) changed; ``changed_by`` is null for a trial that ended."""

    event_type = "pytake.tenants.organization.plan_changed.v1"
    topic = TOPIC

    organization_id: uuid.UUID
    plan: str
    limits: LimitsField = Field(description=LIMITS_DESCRIPTION)
    trial_ends_at: datetime | None
    changed_by: uuid.UUID | None


class OrganizationSuspended(TenantsEvent):
    """The platform operator suspended the organization: its users are refused."""

    event_type = "pytake.tenants.organization.suspended.v1"
    topic = TOPIC

    organization_id: uuid.UUID
    reason: str
    changed_by: uuid.UUID


class OrganizationReactivated(TenantsEvent):
    event_type = "pytake.tenants.organization.reactivated.v1"
    topic = TOPIC

    organization_id: uuid.UUID
    changed_by: uuid.UUID


class Routing(BaseModel):
    """How conversations' assignment routes to a department's members."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    strategy: Literal["round_robin", "manual"]
    max_open_per_agent: int | None


class DepartmentCreated(TenantsEvent):
    event_type = "pytake.tenants.department.created.v1"
    topic = DEPARTMENT_TOPIC

    department_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    member_ids: list[uuid.UUID]
    routing: Routing


class DepartmentUpdated(TenantsEvent):
    """The department's whole current state (name, members, routing) after any change."""

    event_type = "pytake.tenants.department.updated.v1"
    topic = DEPARTMENT_TOPIC

    department_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    member_ids: list[uuid.UUID]
    routing: Routing


class DepartmentDeleted(TenantsEvent):
    event_type = "pytake.tenants.department.deleted.v1"
    topic = DEPARTMENT_TOPIC

    department_id: uuid.UUID
    organization_id: uuid.UUID
