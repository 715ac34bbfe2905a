"""The plan catalog: what each plan allows.

A limit of ``None`` means unlimited. Limit names are the platform-wide ones every
service's ``OrganizationDirectory`` replica understands.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from pytake_common.errors import InvalidInput

AGENTS: Final = "agents"
NUMBERS: Final = "numbers"
CONTACTS: Final = "contacts"
DEPARTMENTS: Final = "departments"
MONTHLY_BUSINESS_MESSAGES: Final = "monthly_business_messages"
API_REQUESTS_PER_MINUTE: Final = "api_requests_per_minute"
WEBHOOK_ENDPOINTS: Final = "webhook_endpoints"
CAMPAIGNS: Final = "campaigns"
MONTHLY_CAMPAIGN_RECIPIENTS: Final = "monthly_campaign_recipients"

LIMIT_NAMES: Final = (
    AGENTS,
    NUMBERS,
    CONTACTS,
    DEPARTMENTS,
    MONTHLY_BUSINESS_MESSAGES,
    API_REQUESTS_PER_MINUTE,
    WEBHOOK_ENDPOINTS,
    CAMPAIGNS,
    MONTHLY_CAMPAIGN_RECIPIENTS,
)
#: Limits counted per calendar month (UTC); the others are current totals.
MONTHLY_LIMITS: Final = frozenset({MONTHLY_BUSINESS_MESSAGES, MONTHLY_CAMPAIGN_RECIPIENTS})

FREE: Final = "free"
DEFAULT_PLAN: Final = FREE
#: The plan of the operators' organization (the one ``create-super-admin`` registers): its
#: tooling calls the API for every tenant, and the free plan's 60 requests a minute held it
#: up (429s) within a minute of use.
OPERATORS_PLAN: Final = "enterprise"

Limits = dict[str, int | None]


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    title: str
    limits: MappingProxyType[str, int | None]

    def limits_dict(self) -> Limits:
        return dict(self.limits)


def _plan(name: str, title: str, *values: int | None) -> Plan:
    assert len(values) == len(LIMIT_NAMES)
    return Plan(name, title, MappingProxyType(dict(zip(LIMIT_NAMES, values, strict=True))))


#: agents, numbers, contacts, departments, monthly business messages, API requests/minute,
#: webhook endpoints, campaigns not finished, campaign recipients per month
PLANS: Final[MappingProxyType[str, Plan]] = MappingProxyType(
    {
        p.name: p
        for p in (
            _plan(FREE, "Free", 2, 1, 500, 1, 250, 60, 1, 1, 250),
            _plan("starter", "Starter", 5, 1, 5_000, 3, 1_000, 300, 3, 5, 5_000),
            _plan("professional", "Professional", 20, 3, 50_000, 10, 10_000, 1_200, 10, 20, 50_000),
            _plan(
                "enterprise", "Enterprise", None, None, None, None, None, 6_000, None, None, None
            ),
        )
    }
)


def get_plan(name: str) -> Plan:
    plan = PLANS.get(name)
    if plan is None:
        raise InvalidInput(f"unknown plan {name!r}", plans=sorted(PLANS))
    return plan


def limits_of(name: str) -> Limits:
    """Limits of a stored plan name (unknown names, e.g. a retired plan, fall back to free)."""
    return (PLANS.get(name) or PLANS[DEFAULT_PLAN]).limits_dict()
