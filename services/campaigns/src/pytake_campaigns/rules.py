"""Pure rules of campaigns: lifecycle, recipient status order, pacing, limits and cost.

No database, broker or HTTP here (tests/unit covers them in milliseconds).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pytake_common.errors import DomainError, InvalidInput, UnprocessableState

# --- campaign lifecycle -----------------------------------------------------------------

DRAFT, SCHEDULED, RUNNING, PAUSED = "draft", "scheduled", "running", "paused"
COMPLETED, CANCELLED = "completed", "cancelled"
FINISHED = frozenset({COMPLETED, CANCELLED})
#: campaigns counted against the plan's ``campaigns`` limit
ACTIVE = frozenset({DRAFT, SCHEDULED, RUNNING, PAUSED})
USER, MESSAGING_LIMIT, NUMBER_UNAVAILABLE = "user", "messaging_limit", "number_unavailable"


class CampaignNotEditable(UnprocessableState):
    code, title = "campaign_not_editable", "Only a draft campaign can be changed"


class InvalidTransition(UnprocessableState):
    code, title = "invalid_campaign_state", "Not allowed in the campaign's current state"


#: action -> the statuses it may be taken from
ALLOWED_FROM: Mapping[str, frozenset[str]] = {
    "edit": frozenset({DRAFT}),
    "delete": frozenset({DRAFT, COMPLETED, CANCELLED}),
    "start": frozenset({DRAFT}),
    "pause": frozenset({SCHEDULED, RUNNING}),
    "resume": frozenset({PAUSED}),
    "cancel": frozenset({SCHEDULED, RUNNING, PAUSED}),
}


def check_action(action: str, status: str) -> None:
    if status in ALLOWED_FROM[action]:
        return
    if action == "edit":
        raise CampaignNotEditable(f"the campaign is {status}; only a draft can be changed")
    allowed = ", ".join(sorted(ALLOWED_FROM[action]))
    raise InvalidTransition(
        f"cannot {action} a {status} campaign (only from: {allowed})",
        campaign_status=status,
        action=action,
    )


# --- recipient statuses -----------------------------------------------------------------

QUEUED, DISPATCHED, ACCEPTED = "queued", "dispatched", "accepted"
#: dispatched or accepted, and no outcome ever came (``campaign_unconfirmed_after_s``):
#: whether Meta got the message is unknown (e.g. the Graph call's answer was lost); it is
#: never sent again, and a later status still moves it on
UNCONFIRMED = "unconfirmed"
SENT, DELIVERED, READ, REPLIED, FAILED = "sent", "delivered", "read", "replied", "failed"
RECIPIENT_CANCELLED = "cancelled"
RECIPIENT_STATUSES = (
    QUEUED,
    DISPATCHED,
    ACCEPTED,
    UNCONFIRMED,
    SENT,
    DELIVERED,
    READ,
    REPLIED,
    FAILED,
    RECIPIENT_CANCELLED,
)
#: sends a campaign is waiting on (the in-flight window)
IN_FLIGHT = (DISPATCHED, ACCEPTED)
#: the campaign is done once none of its recipients is in one of these
PENDING = (QUEUED, DISPATCHED, ACCEPTED)
RANK = {
    QUEUED: 0,
    DISPATCHED: 1,
    ACCEPTED: 2,
    UNCONFIRMED: 3,
    SENT: 4,
    DELIVERED: 5,
    READ: 6,
    REPLIED: 7,
}


def moves_forward(current: str, new: str) -> bool:
    """Whether a recipient at ``current`` takes ``new`` (never backwards).

    ``failed`` is final, and wins over anything before ``read`` (WhatsApp may report a
    failure after ``delivered``, multi-device); a reply wins over any delivery status but
    not over a failure; a cancelled recipient was never sent to and stays so.
    """
    if current in (FAILED, RECIPIENT_CANCELLED):
        return False
    if new == FAILED:
        return current not in (READ, REPLIED)
    if new == RECIPIENT_CANCELLED:
        return current == QUEUED
    return RANK.get(new, -1) > RANK.get(current, 99)


def forward_from(new: str) -> tuple[str, ...]:
    """The statuses from which ``new`` is a forward move (for a guarded SQL update)."""
    return tuple(s for s in RECIPIENT_STATUSES if moves_forward(s, new))


# --- messaging limit (Meta's tiers) -----------------------------------------------------

TIERS: Mapping[str, int | None] = {
    "TIER_50": 50,
    "TIER_250": 250,
    "TIER_1K": 1_000,
    "TIER_2K": 2_000,
    "TIER_10K": 10_000,
    "TIER_100K": 100_000,
    "TIER_UNLIMITED": None,
}
#: A number whose tier is not known yet is held to the lowest tier a new number gets.
UNKNOWN_TIER_LIMIT = 250


def tier_limit(tier: str | None) -> int | None:
    """Unique business-initiated recipients per rolling 24 h (None: unlimited)."""
    if tier is None:
        return UNKNOWN_TIER_LIMIT
    return TIERS.get(tier.strip().upper(), UNKNOWN_TIER_LIMIT)


# --- pacing -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pace:
    """What one dispatcher tick may release for one campaign."""

    release: int
    credit: float


def send_rate(rate_cap: int | None, throughput: int) -> int:
    """Sends per second: the campaign's cap, never above the number's throughput."""
    return max(1, min(rate_cap, throughput) if rate_cap else throughput)


def refill(rate: int, credit: float, elapsed_s: float) -> float:
    """The bucket's credit after ``elapsed_s``: ``rate`` per second, one second's at most
    (so refilling in several steps or at once gives the same credit)."""
    return min(float(rate), credit + rate * max(elapsed_s, 0.0))


def pace(
    rate: int,
    credit: float,
    elapsed_s: float,
    in_flight: int,
    window_s: float,
    queued: int,
    allowance: int | None,
) -> Pace:
    """Token bucket: ``rate`` per second, at most one second of credit saved; never more
    than ``rate * window_s`` in flight; never more than ``allowance`` (the messaging limit's
    room, None: unlimited) nor ``queued``."""
    credit = refill(rate, credit, elapsed_s)
    room = max(0, math.ceil(rate * window_s) - in_flight)
    release = min(math.floor(credit), room, queued)
    if allowance is not None:
        release = min(release, max(allowance, 0))
    return Pace(release=max(release, 0), credit=credit - max(release, 0))


# --- cost -------------------------------------------------------------------------------


def cost_of(category: str | None, billable: bool | None, rates: Mapping[str, float]) -> Decimal:
    """A message's cost from its status webhook's ``pricing`` and the rate table."""
    if not billable or not category:
        return Decimal(0)
    return Decimal(str(rates.get(category.strip().lower(), 0.0)))


# --- template parameters ----------------------------------------------------------------

APPROVED, MARKETING = "APPROVED", "MARKETING"
#: ``{{1}}`` or ``{{first_name}}``: a variable of the template's text
VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
#: ``{{...}}`` in a parameter: a placeholder filled from the contact
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
CONTACT_FIELD = re.compile(r"^contact\.(name|phone|attributes\.[A-Za-z0-9_\-]{1,64})$")


class TemplateNotFound(DomainError):
    status, code, title = 422, "template_not_found", "No such template for this number"


class TemplateNotApproved(DomainError):
    status, code, title = 422, "template_not_approved", "The template is not approved"


class TemplateParameterCount(InvalidInput):
    code, title = "template_parameter_count", "Wrong number of template parameters"


class UnknownPlaceholder(InvalidInput):
    code, title = "invalid_placeholder", "Unknown placeholder"


def _component_text(components: Sequence[Mapping[str, Any]], kind: str) -> str | None:
    for c in components:
        if str(c.get("type", "")).upper() == kind and isinstance(c.get("text"), str):
            return str(c["text"])
    return None


def expected_parameters(components: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many parameters each part of the template takes: body, header, url buttons."""
    counts = {}
    for part, kind in (("parameters", "BODY"), ("header_parameters", "HEADER")):
        text = _component_text(components, kind) or ""
        counts[part] = len(dict.fromkeys(VARIABLE.findall(text)))
    buttons = 0
    for c in components:
        if str(c.get("type", "")).upper() != "BUTTONS":
            continue
        for b in c.get("buttons") or []:
            if (
                isinstance(b, Mapping)
                and str(b.get("type", "")).upper() == "URL"
                and VARIABLE.search(str(b.get("url") or ""))
            ):
                buttons += 1
    counts["button_parameters"] = buttons
    return counts


def _value(item: Any) -> str:
    return item if isinstance(item, str) else str(item.get("value", ""))


def check_template(
    status: str, components: Sequence[Mapping[str, Any]], spec: Mapping[str, Sequence[Any]]
) -> None:
    """The template is approved and ``spec`` fills exactly its variables, with known
    placeholders (whether a contact has the values is conversations' check per send)."""
    if status.upper() != APPROVED:
        raise TemplateNotApproved(
            f"the template is {status}; only approved templates can be sent",
            template_status=status,
        )
    for part, expected in expected_parameters(components).items():
        given = len(spec.get(part) or [])
        if given != expected:
            raise TemplateParameterCount(
                f"the template takes {expected} {part}, {given} given",
                part=part,
                expected=expected,
                given=given,
            )
        for item in spec.get(part) or []:
            for name in PLACEHOLDER.findall(_value(item)):
                if not CONTACT_FIELD.match(name):
                    raise UnknownPlaceholder(
                        f"unknown placeholder {{{{{name}}}}}; use contact.name, contact.phone "
                        "or contact.attributes.<key>",
                        placeholder=name,
                    )
