"""Send bodies are checked against Meta's rules and limits (HTTP 400, code 100)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from pytake_meta_simulator.testing import Receiver

TO = "5511999990000"


def msg(type_: str, content: Any, **extra: Any) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": TO, "type": type_, type_: content, **extra}


def buttons(n: int, title: str = "Yes") -> dict[str, Any]:
    return {
        "type": "button",
        "body": {"text": "Pick one"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": f"b{i}", "title": f"{title}{i}"}}
                for i in range(n)
            ]
        },
    }


def list_message(rows_per_section: list[int]) -> dict[str, Any]:
    return {
        "type": "list",
        "body": {"text": "Choose"},
        "action": {
            "button": "Options",
            "sections": [
                {
                    "title": f"S{s}",
                    "rows": [{"id": f"r{s}-{r}", "title": f"Row {r}"} for r in range(count)],
                }
                for s, count in enumerate(rows_per_section)
            ],
        },
    }


VALID = {
    "text": msg("text", {"body": "x" * 4096, "preview_url": True}),
    "image": msg("image", {"id": "1234567890", "caption": "look"}),
    "audio": msg("audio", {"link": "https://example.com/a.ogg"}),
    "video": msg("video", {"id": "1234567890"}),
    "document": msg("document", {"link": "https://example.com/a.pdf", "filename": "a.pdf"}),
    "sticker": msg("sticker", {"id": "1234567890"}),
    "reaction": msg("reaction", {"message_id": "wamid.X==", "emoji": "👍"}),
    "reaction removed": msg("reaction", {"message_id": "wamid.X==", "emoji": ""}),
    "location": msg("location", {"latitude": -23.5, "longitude": "-46.6", "name": "SP"}),
    "contacts": {
        "messaging_product": "whatsapp",
        "to": TO,
        "type": "contacts",
        "contacts": [{"name": {"formatted_name": "Ana Lima", "first_name": "Ana"}}],
    },
    "template positional": msg(
        "template",
        {
            "name": "order_update",
            "language": {"code": "pt_BR"},
            "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "42"}]},
                {
                    "type": "button",
                    "sub_type": "quick_reply",
                    "index": "0",
                    "parameters": [{"type": "payload", "payload": "OK"}],
                },
            ],
        },
    ),
    "template named": msg(
        "template",
        {
            "name": "greeting",
            "language": {"code": "en_US"},
            "components": [
                {
                    "type": "body",
                    "parameters": [{"type": "text", "parameter_name": "name", "text": "Ana"}],
                }
            ],
        },
    ),
    "interactive buttons": msg("interactive", buttons(3)),
    "interactive list": msg("interactive", list_message([5, 5])),
    "interactive cta_url": msg(
        "interactive",
        {
            "type": "cta_url",
            "body": {"text": "See it"},
            "action": {
                "name": "cta_url",
                "parameters": {"display_text": "Open", "url": "https://example.com"},
            },
        },
    ),
    "with context": msg("text", {"body": "reply"}, context={"message_id": "wamid.Q=="}),
}


@pytest.mark.parametrize("body", VALID.values(), ids=VALID.keys())
async def test_valid_bodies_are_accepted(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], body: dict[str, Any]
) -> None:
    resp = await sim.post(f"/v21.0/{number['phone_number_id']}/messages", headers=auth, json=body)
    assert resp.status_code == 200, resp.text
    [sent] = (await sim.get("/_sim/sent")).json()
    assert sent["type"] == body["type"]
    assert sent["wamid"] == resp.json()["messages"][0]["id"]


INVALID = {
    "no messaging_product": ({"to": TO, "text": {"body": "x"}}, "messaging_product is required"),
    "wrong messaging_product": (
        {"messaging_product": "sms", "to": TO, "text": {"body": "x"}},
        "messaging_product must be one of",
    ),
    "no to": ({"messaging_product": "whatsapp", "text": {"body": "x"}}, "parameter to is required"),
    "bad recipient_type": (msg("text", {"body": "x"}, recipient_type="group"), "recipient_type"),
    "unknown type": (msg("hologram", {}), "Param type must be one of"),
    "no text object": ({"messaging_product": "whatsapp", "to": TO}, "parameter text is required"),
    "empty text": (msg("text", {"body": "   "}), "text['body'] must be a non-empty string"),
    "no text body": (msg("text", {}), "text['body'] is required"),
    "text too long": (msg("text", {"body": "x" * 4097}), "at most 4096 characters"),
    "media without id or link": (msg("image", {"caption": "c"}), "exactly one of"),
    "media with id and link": (
        msg("image", {"id": "1", "link": "https://example.com/x.png"}),
        "exactly one of",
    ),
    "caption too long": (msg("video", {"id": "1", "caption": "c" * 1025}), "at most 1024"),
    "reaction without message_id": (msg("reaction", {"emoji": "👍"}), "reaction['message_id']"),
    "location without latitude": (msg("location", {"longitude": 1}), "location['latitude']"),
    "latitude out of range": (msg("location", {"latitude": 91, "longitude": 1}), "between"),
    "contacts empty": (
        {"messaging_product": "whatsapp", "to": TO, "type": "contacts", "contacts": []},
        "between 1 and",
    ),
    "contact without formatted_name": (
        {"messaging_product": "whatsapp", "to": TO, "type": "contacts", "contacts": [{"name": {}}]},
        "formatted_name",
    ),
    "template without language": (msg("template", {"name": "t"}), "template['language']"),
    "template mixed parameters": (
        msg(
            "template",
            {
                "name": "t",
                "language": {"code": "en"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "a", "parameter_name": "a"},
                            {"type": "text", "text": "b"},
                        ],
                    }
                ],
            },
        ),
        "parameter_name",
    ),
    "template button without index": (
        msg(
            "template",
            {
                "name": "t",
                "language": {"code": "en"},
                "components": [{"type": "button", "sub_type": "url"}],
            },
        ),
        "['index']",
    ),
    "four buttons": (msg("interactive", buttons(4)), "between 1 and 3"),
    "button title too long": (msg("interactive", buttons(1, title="T" * 20)), "at most 20"),
    "interactive without body": (
        msg("interactive", {"type": "button", "action": buttons(1)["action"]}),
        "interactive['body'] is required",
    ),
    "footer too long": (
        msg("interactive", {**buttons(1), "footer": {"text": "f" * 61}}),
        "at most 60",
    ),
    "list with eleven rows": (msg("interactive", list_message([6, 5])), "at most 10 rows"),
    "unknown interactive type": (
        msg("interactive", {"type": "carousel3d", "action": {}}),
        "interactive['type']",
    ),
    "callback data too long": (
        msg("text", {"body": "x"}, biz_opaque_callback_data="c" * 513),
        "at most 512",
    ),
    "context without message_id": (msg("text", {"body": "x"}, context={}), "context['message_id']"),
}


@pytest.mark.parametrize(("body", "fragment"), INVALID.values(), ids=INVALID.keys())
async def test_invalid_bodies_get_code_100(
    sim: httpx.AsyncClient,
    number: dict[str, str],
    auth: dict[str, str],
    receiver: Receiver,
    body: dict[str, Any],
    fragment: str,
) -> None:
    resp = await sim.post(f"/v21.0/{number['phone_number_id']}/messages", headers=auth, json=body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == 100
    assert error["type"] == "OAuthException"
    assert error["message"].startswith("(#100) ")
    assert fragment in error["message"]
    assert error["fbtrace_id"]
    assert (await sim.get("/_sim/sent")).json() == []


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]"])
async def test_non_object_json_bodies_get_code_100(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], content: bytes
) -> None:
    resp = await sim.post(
        f"/v21.0/{number['phone_number_id']}/messages",
        headers={**auth, "Content-Type": "application/json"},
        content=content,
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == 100
