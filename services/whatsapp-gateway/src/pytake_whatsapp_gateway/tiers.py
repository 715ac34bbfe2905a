"""The number's messaging limit (Meta's tier), read from the Graph API.

Meta's ``messaging_limit_tier`` field of a phone number answers ``TIER_250`` ...
``TIER_UNLIMITED``; Meta has deprecated it for ``whatsapp_business_manager_messaging_limit``
(the limit is now the business portfolio's, shared by its numbers). Both are asked, one
at a time (a field Meta no longer knows fails the whole call), and read tolerantly: a
``TIER_*`` name as is, a number of unique users per 24 h (``-1``: unlimited) as its tier.
Reading the tier never fails a registration or a sync: unknown stays None.
"""

from __future__ import annotations

from typing import Any

from pytake_whatsapp_gateway.sending.graph import GraphClient

TIER_FIELDS = ("messaging_limit_tier", "whatsapp_business_manager_messaging_limit")
#: unique business-initiated users per moving 24 h -> Meta's tier name
TIER_OF_LIMIT = {
    50: "TIER_50",
    250: "TIER_250",
    1000: "TIER_1K",
    2000: "TIER_2K",
    10000: "TIER_10K",
    100000: "TIER_100K",
    -1: "TIER_UNLIMITED",
}


def tier_of(value: Any) -> str | None:
    """Meta's tier name for a field's value; None when it is not one."""
    if isinstance(value, dict):
        for key in ("current_limit", "max_daily_conversations_per_business", "tier", "value"):
            if key in value:
                return tier_of(value[key])
        return None
    if isinstance(value, str):
        text = value.strip().upper()
        if text.startswith("TIER_") and len(text) <= 40:
            return text
        value = text
    try:
        return TIER_OF_LIMIT.get(int(value))
    except (TypeError, ValueError):
        return None


async def read_tier(graph: GraphClient, access_token: str, phone_number_id: str) -> str | None:
    """The number's tier as Meta answers it now; None when Meta does not say."""
    for name in TIER_FIELDS:
        answer = await graph.call(
            "GET", graph.url(phone_number_id), access_token, params={"fields": name}
        )
        if answer.error is None and answer.status:
            tier = tier_of(answer.body.get(name))
            if tier is not None:
                return tier
    return None
