"""Pure rules behind campaigns' sends: Meta's marketing refusals are terminal, the
status webhook's pricing is read as documented, the messaging tier in either spelling."""

import pytest

from pytake_whatsapp_gateway.events import StatusPricing
from pytake_whatsapp_gateway.sending.dispatcher import PRIORITIES
from pytake_whatsapp_gateway.sending.errors import from_response
from pytake_whatsapp_gateway.tiers import tier_of
from pytake_whatsapp_gateway.webhooks.parsing import _pricing


def meta(code: int, **error) -> dict:
    return {"error": {"code": code, "message": "refused", **error}}


@pytest.mark.parametrize("code", [131049, 131050])
@pytest.mark.parametrize("status", [400, 500])
def test_marketing_refusals_are_terminal_and_keep_metas_code(code: int, status: int) -> None:
    error = from_response(status, meta(code, is_transient=True))
    assert (error.code, error.transient) == (code, False)
    assert error.detail  # said in words for the agent


def test_the_messaging_limit_code_is_terminal() -> None:
    error = from_response(400, meta(131048))
    assert (error.code, error.transient) == (131048, False)


def test_pricing_keeps_the_documented_fields_of_the_right_types() -> None:
    raw = {"billable": True, "pricing_model": "PMP", "category": "marketing", "type": "regular"}
    assert _pricing(raw) == StatusPricing(category="marketing", billable=True, pricing_model="PMP")
    assert _pricing({"billable": "yes", "category": {"name": "x"}}) == StatusPricing()
    assert _pricing(None) is None
    assert _pricing([]) is None


@pytest.mark.parametrize(
    ("value", "tier"),
    [
        ("TIER_2K", "TIER_2K"),
        ("tier_unlimited", "TIER_UNLIMITED"),
        (250, "TIER_250"),
        ("100000", "TIER_100K"),
        (-1, "TIER_UNLIMITED"),
        ({"current_limit": "TIER_10K"}, "TIER_10K"),
        ({"max_daily_conversations_per_business": 2000}, "TIER_2K"),
        (None, None),
        ("soon", None),
        (12345, None),
    ],
)
def test_tiers_are_read_in_either_of_metas_spellings(value: object, tier: str | None) -> None:
    assert tier_of(value) == tier


def test_priorities_order_interactive_automation_campaign() -> None:
    assert PRIORITIES["interactive"] < PRIORITIES["automation"] < PRIORITIES["campaign"]
