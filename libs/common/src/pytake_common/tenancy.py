"""Organizations' status, plan and limits, replicated from tenants' events.

Every process keeps this view so that each service can refuse an action that
would exceed a plan limit (402) and every request of a suspended organization
(403) without calling tenants. Plan changes and suspensions take effect within
about a second everywhere.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pytake_common.errors import PlanLimitExceeded
from pytake_common.event_types import (
    TENANTS_ORGANIZATION_CREATED_V1,
    TENANTS_ORGANIZATION_PLAN_CHANGED_V1,
    TENANTS_ORGANIZATION_REACTIVATED_V1,
    TENANTS_ORGANIZATION_SUSPENDED_V1,
    TENANTS_ORGANIZATION_TOPIC,
    TENANTS_ORGANIZATION_UPDATED_V1,
)
from pytake_common.events import CloudEvent
from pytake_common.replica import BroadcastReplica
from pytake_common.settings import ServiceSettings

LIMIT_NAMES = frozenset(
    {
        "agents",
        "numbers",
        "contacts",
        "departments",
        "monthly_business_messages",
        "api_requests_per_minute",
        "webhook_endpoints",
        "campaigns",
        "monthly_campaign_recipients",
    }
)


@dataclass(frozen=True, slots=True)
class OrganizationState:
    organization_id: uuid.UUID
    status: str = "active"
    plan: str = "free"
    limits: dict[str, int | None] = field(default_factory=dict)
    trial_ends_at: datetime | None = None


class OrganizationDirectory(BroadcastReplica):
    def __init__(self, settings: ServiceSettings) -> None:
        super().__init__(settings, [TENANTS_ORGANIZATION_TOPIC], "organizations")
        self.orgs: dict[uuid.UUID, OrganizationState] = {}

    def handlers(self) -> dict[str, Any]:
        return {
            TENANTS_ORGANIZATION_CREATED_V1: self._upsert,
            TENANTS_ORGANIZATION_UPDATED_V1: self._upsert,
            TENANTS_ORGANIZATION_PLAN_CHANGED_V1: self._upsert,
            TENANTS_ORGANIZATION_SUSPENDED_V1: lambda e: self._status(e, "suspended"),
            TENANTS_ORGANIZATION_REACTIVATED_V1: lambda e: self._status(e, "active"),
        }

    def _current(self, event: CloudEvent) -> OrganizationState:
        org = uuid.UUID(str(event.data.get("organization_id", event.tenantid)))
        return self.orgs.get(org) or OrganizationState(org)

    def _upsert(self, event: CloudEvent) -> None:
        state, data = self._current(event), event.data
        changes: dict[str, Any] = {}
        if "status" in data:
            changes["status"] = data["status"]
        if "plan" in data:
            changes["plan"] = data["plan"]
        if data.get("limits"):
            changes["limits"] = {
                k: (None if v is None else int(v)) for k, v in data["limits"].items()
            }
        if "trial_ends_at" in data:
            ends = data["trial_ends_at"]
            changes["trial_ends_at"] = datetime.fromisoformat(ends) if ends else None
        self.orgs[state.organization_id] = replace(state, **changes)

    def _status(self, event: CloudEvent, status: str) -> None:
        state = self._current(event)
        self.orgs[state.organization_id] = replace(state, status=status)

    def get(self, organization_id: uuid.UUID | str) -> OrganizationState | None:
        return self.orgs.get(_uuid(organization_id))

    def is_suspended(self, organization_id: uuid.UUID | str) -> bool:
        state = self.get(organization_id)
        return state is not None and state.status == "suspended"

    def limit(self, organization_id: uuid.UUID | str, name: str) -> int | None:
        if name not in LIMIT_NAMES:
            raise ValueError(f"unknown limit {name!r}")
        state = self.get(organization_id)
        return None if state is None else state.limits.get(name)

    async def check_limit(self, organization_id: uuid.UUID | str, name: str, used: int) -> None:
        """Raise :class:`PlanLimitExceeded` when one more would pass the plan's limit."""
        allowed = self.limit(organization_id, name)
        if allowed is not None and used >= allowed:
            raise PlanLimitExceeded(name, allowed, used)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
