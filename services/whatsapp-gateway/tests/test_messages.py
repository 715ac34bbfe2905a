"""Outbound bodies and Meta's limits, checked before any Graph call (pure)."""

import uuid
from typing import Any

import pytest

from pytake_whatsapp_gateway.sending.messages import (
    InvalidMessage,
    MessageRequest,
    build,
    check_against_template,
)

MID = uuid.UUID("00000000-0000-0000-0000-000000000001")


def req(kind: str, payload: dict[str, Any] | None = None, text: str | None = None):
    return MessageRequest(
        to="5511999990000",
        type=kind,
        text_body=text,
        preview_url=False,
        payload=payload,
        context_wamid="wamid.q",
        message_id=MID,
    )


def buttons(n: int, title: str = "Ok") -> dict[str, Any]:
    return {
        "type": "button",
        "body": {"text": "Escolha"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": f"b{i}", "title": title}} for i in range(n)
            ]
        },
    }


def a_list(sections: int = 1, rows: int = 3, **row: str) -> dict[str, Any]:
    return {
        "type": "list",
        "body": {"text": "Menu"},
        "action": {
            "button": "Ver opções",
            "sections": [
                {
                    "title": f"S{s}",
                    "rows": [{"id": f"{s}-{r}", "title": "Opção", **row} for r in range(rows)],
                }
                for s in range(sections)
            ],
        },
    }


def test_bodies_follow_metas_shape():
    template = {
        "name": "pedido",
        "language": {"code": "pt_BR"},
        "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"id": "m"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
            {
                "type": "button",
                "sub_type": "quick_reply",
                "index": "0",
                "parameters": [{"type": "payload", "payload": "P"}],
            },
        ],
    }
    body = build(req("template", template))
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5511999990000",
        "type": "template",
        "template": template,
        "biz_opaque_callback_data": str(MID),
        "context": {"message_id": "wamid.q"},
    }
    assert build(req("text", text="oi"))["text"] == {"body": "oi", "preview_url": False}
    assert build(req("image", {"link": "https://x.test/a.png", "caption": "c"}))["image"]
    assert build(req("interactive", buttons(3)))["interactive"]["type"] == "button"
    assert build(req("interactive", a_list(2, 5)))["interactive"]["type"] == "list"
    assert build(req("location", {"latitude": -23.5, "longitude": -46.6}))["location"]
    reaction = build(req("reaction", {"message_id": "wamid.x", "emoji": ""}))
    assert "context" not in reaction  # a reaction names its message itself


@pytest.mark.parametrize(
    ("kind", "payload", "text", "reason"),
    [
        ("text", None, "x" * 4097, "text body is longer than 4096 characters"),
        ("text", None, "  ", "text body is required"),
        ("interactive", buttons(4), None, "at most 3 reply buttons (4 given)"),
        ("interactive", buttons(2, "t" * 21), None, "button 1 title is longer than 20"),
        (
            "interactive",
            {**buttons(1), "body": {"text": "b" * 1025}},
            None,
            "body is longer than 1024",
        ),
        ("interactive", {**buttons(1), "footer": {"text": "f" * 61}}, None, "footer is longer"),
        ("interactive", a_list(11, 1), None, "at most 10 sections (11 given)"),
        ("interactive", a_list(2, 6), None, "at most 10 rows in total (12 given)"),
        ("interactive", a_list(1, 1, title="r" * 25), None, "row 1 title is longer than 24"),
        ("interactive", a_list(1, 1, description="d" * 73), None, "description is longer than 72"),
        (
            "interactive",
            {**a_list(), "action": {**a_list()["action"], "button": "b" * 21}},
            None,
            "list button text is longer than 20",
        ),
        ("image", {"id": "m", "link": "https://x"}, None, "exactly one of id"),
        ("sticker", {"id": "m", "caption": "c"}, None, "a sticker cannot have a caption"),
        ("location", {"latitude": 91, "longitude": 0}, None, "latitude must be between"),
        ("reaction", {"message_id": "wamid.x"}, None, "reaction emoji is required"),
        ("template", {"name": "t"}, None, "template language {code} is required"),
        (
            "template",
            {
                "name": "t",
                "language": {"code": "en"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "text": "a", "parameter_name": "name"},
                            {"type": "text", "text": "b"},
                        ],
                    }
                ],
            },
            None,
            "need parameter_name on every parameter",
        ),
        ("contacts", {"x": 1}, None, "sending 'contacts' messages is not supported"),
    ],
)
def test_limits_fail_with_a_clear_reason(kind, payload, text, reason):
    with pytest.raises(InvalidMessage, match=None) as caught:
        build(req(kind, payload, text))
    assert reason in str(caught.value)


def test_parameters_are_counted_against_the_approved_body():
    stored = [{"type": "BODY", "text": "Olá {{1}}, seu pedido {{2}} saiu"}]
    one = {"components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}]}
    with pytest.raises(InvalidMessage, match="expects 2 parameters, 1 given"):
        check_against_template(one, stored)
    named_stored = [{"type": "BODY", "text": "Olá {{nome}}"}]
    wrong = {
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana", "parameter_name": "name"}],
            }
        ]
    }
    with pytest.raises(InvalidMessage, match="missing \\['nome'\\]"):
        check_against_template(wrong, named_stored)
    right = {
        "components": [
            {
                "type": "body",
                "parameters": [{"type": "text", "text": "Ana", "parameter_name": "nome"}],
            }
        ]
    }
    check_against_template(right, named_stored)
