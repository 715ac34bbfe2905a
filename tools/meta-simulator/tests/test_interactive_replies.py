"""Interactive replies: the customer presses a reply button or picks a list row."""

from __future__ import annotations

from typing import Any

import httpx

from pytake_meta_simulator.testing import Receiver

CUSTOMER = "5511988887777"


def _inbound(number: dict[str, str], **fields: Any) -> dict[str, Any]:
    return {
        "phone_number_id": number["phone_number_id"],
        "from_wa_id": CUSTOMER,
        "profile_name": "Bia",
        **fields,
    }


async def _send_buttons(sim: httpx.AsyncClient, number: dict[str, str]) -> str:
    resp = await sim.post(
        f"/v21.0/{number['phone_number_id']}/messages",
        headers={"Authorization": f"Bearer {number['access_token']}"},
        json={
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": CUSTOMER,
            "type": "interactive",
            "interactive": {
                "type": "button",
                "body": {"text": "Sales or support?"},
                "action": {
                    "buttons": [
                        {"type": "reply", "reply": {"id": "sales", "title": "Sales"}},
                        {"type": "reply", "reply": {"id": "support", "title": "Support"}},
                    ]
                },
            },
        },
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["messages"][0]["id"])


async def test_button_reply_answers_the_last_interactive_message(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    sent_wamid = await _send_buttons(sim, number)
    receiver.reset()  # only the reply's webhook below, not the send's statuses
    resp = await sim.post(
        "/_sim/inbound",
        json=_inbound(
            number, interactive={"type": "button_reply", "id": "support", "title": "Support"}
        ),
    )
    assert resp.status_code == 200, resp.text
    out = resp.json()
    assert out["status_code"] == 200
    message = out["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["type"] == "interactive"
    assert message["interactive"] == {
        "type": "button_reply",
        "button_reply": {"id": "support", "title": "Support"},
    }
    assert message["context"] == {"from": number["display_phone_number"], "id": sent_wamid}
    assert message["id"] == out["wamid"] and message["from"] == CUSTOMER
    # the send's status webhooks may be posted around it: find the reply's
    posted = [r for r in await receiver.wait_for(1) if r.json() == out["payload"]]
    assert len(posted) == 1 and posted[0].signature_valid(number["app_secret"])


async def test_list_reply_with_description_and_explicit_context(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    resp = await sim.post(
        "/_sim/inbound",
        json=_inbound(
            number,
            interactive={
                "type": "list_reply",
                "id": "r2",
                "title": "Boleto",
                "description": "3 days",
            },
            context_id="wamid.given",
        ),
    )
    assert resp.status_code == 200, resp.text
    message = resp.json()["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["interactive"] == {
        "type": "list_reply",
        "list_reply": {"id": "r2", "title": "Boleto", "description": "3 days"},
    }
    assert message["context"]["id"] == "wamid.given"


async def test_without_an_interactive_message_sent_there_is_no_context(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    resp = await sim.post(
        "/_sim/inbound",
        json=_inbound(number, interactive={"type": "button_reply", "id": "x", "title": "X"}),
    )
    message = resp.json()["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]
    assert "context" not in message
    text = await sim.post("/_sim/inbound", json=_inbound(number, text="hello"))
    message = text.json()["payload"]["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message["type"] == "text" and message["text"] == {"body": "hello"}
    assert "context" not in message


async def test_exactly_one_of_text_or_interactive(
    sim: httpx.AsyncClient, number: dict[str, str]
) -> None:
    both = _inbound(
        number, text="hi", interactive={"type": "button_reply", "id": "a", "title": "A"}
    )
    assert (await sim.post("/_sim/inbound", json=both)).status_code == 422
    assert (await sim.post("/_sim/inbound", json=_inbound(number))).status_code == 422
    wrong = _inbound(number, interactive={"type": "nfm_reply", "id": "a", "title": "A"})
    assert (await sim.post("/_sim/inbound", json=wrong)).status_code == 422
