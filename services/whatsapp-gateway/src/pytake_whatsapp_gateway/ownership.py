"""Proof that an access token controls a WhatsApp number, before the number is stored.

Without it anybody could register a victim's ``phone_number_id`` (the owner then
gets 409) or claim a victim's ``waba_id`` (and receive or break that account's
template, quality and account webhooks). Two Graph calls with the given token:

1. ``GET /{version}/{phone_number_id}?fields=...`` answers 200 with the same id;
2. ``GET /{version}/{waba_id}/phone_numbers`` lists that id (pages followed).

Meta refusing either is a 422 naming the check; Meta not answering (network error,
timeout, 5xx, 429) is a 503 and nothing is stored.
"""

from __future__ import annotations

from typing import Any

from pytake_common.errors import DomainError
from pytake_whatsapp_gateway.sending.graph import GraphAnswer, GraphClient

PROFILE_FIELDS = "id,display_phone_number,verified_name,quality_rating"
PHONE_NUMBER = "phone_number"
WABA_PHONE_NUMBERS = "waba_phone_numbers"
#: Pages of a WABA's numbers read at most (Meta pages by 25 or more; WABAs hold few).
MAX_PAGES = 20


class OwnershipNotProven(DomainError):
    status, code, title = (
        422,
        "number_ownership_not_proven",
        "The access token does not control the number",
    )

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(detail, check=check)


class MetaUnavailable(DomainError):
    status, code, title = 503, "meta_unavailable", "WhatsApp's API could not be reached"


async def prove_control(
    graph: GraphClient, access_token: str, phone_number_id: str, waba_id: str
) -> dict[str, Any]:
    """Meta's profile of the number, once both checks passed."""
    profile = await graph.call(
        "GET", graph.url(phone_number_id), access_token, params={"fields": PROFILE_FIELDS}
    )
    _reachable(profile)
    if profile.error is not None or profile.body.get("id") != phone_number_id:
        raise OwnershipNotProven(
            PHONE_NUMBER,
            f"Meta did not show phone number {phone_number_id} to this access token"
            + _why(profile),
        )
    params: dict[str, str] = {}
    for _ in range(MAX_PAGES):
        page = await graph.call(
            "GET", graph.url(waba_id, "phone_numbers"), access_token, params=params
        )
        _reachable(page)
        if page.error is not None:
            break
        data = page.body.get("data")
        listed = data if isinstance(data, list) else []
        if any(isinstance(n, dict) and n.get("id") == phone_number_id for n in listed):
            return profile.body
        after = _after(page.body)
        if after is None:
            break
        params = {"after": after}
    raise OwnershipNotProven(
        WABA_PHONE_NUMBERS,
        f"Meta did not list phone number {phone_number_id} among the numbers of WhatsApp "
        f"Business account {waba_id} for this access token" + _why(page),
    )


def _reachable(answer: GraphAnswer) -> None:
    """No answer (network error, timeout) or a temporary one (5xx, 429, Meta's transient
    codes): the check could not be made."""
    if answer.status == 0 or (answer.error is not None and answer.error.transient):
        raise MetaUnavailable("WhatsApp's API did not answer the ownership check; try again later")


def _why(answer: GraphAnswer) -> str:
    return f" ({answer.error.title})" if answer.error is not None and answer.error.title else ""


def _after(body: dict[str, Any]) -> str | None:
    paging = body.get("paging")
    if not isinstance(paging, dict) or not paging.get("next"):
        return None
    cursors = paging.get("cursors")
    after = cursors.get("after") if isinstance(cursors, dict) else None
    return after if isinstance(after, str) and after else None
