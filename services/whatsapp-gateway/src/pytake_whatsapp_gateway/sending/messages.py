"""Outbound message bodies, checked against Meta's limits before any Graph call.

A request breaking a documented limit (WHATSAPP.md) fails at once with a
clear reason instead of costing a call and an opaque ``(#100)`` error.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
CAPTIONED = frozenset({"image", "video", "document"})
SENDABLE = frozenset({"text", "template", "interactive", "reaction", "location"} | MEDIA_TYPES)
TEXT_MAX = 4096
CAPTION_MAX = 1024
BUTTONS_MAX, BUTTON_TITLE_MAX = 3, 20
BUTTON_BODY_MAX, LIST_BODY_MAX, FOOTER_MAX, HEADER_TEXT_MAX = 1024, 4096, 60, 60
LIST_BUTTON_MAX, SECTIONS_MAX, ROWS_MAX = 20, 10, 10
ROW_TITLE_MAX, ROW_DESCRIPTION_MAX, SECTION_TITLE_MAX, ROW_ID_MAX = 24, 72, 24, 200
CALLBACK_MAX = 512
TEMPLATE_COMPONENTS = frozenset({"header", "body", "button", "carousel", "limited_time_offer"})
PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


class InvalidMessage(Exception):
    """The request breaks one of Meta's limits; ``str(exc)`` says which."""


@dataclass(frozen=True, slots=True)
class MessageRequest:
    to: str
    type: str
    text_body: str | None
    preview_url: bool
    payload: dict[str, Any] | None
    context_wamid: str | None
    message_id: uuid.UUID


def build(req: MessageRequest) -> dict[str, Any]:
    """The Graph API body for ``req``; raise :class:`InvalidMessage` when it would be refused."""
    if req.type not in SENDABLE:
        raise InvalidMessage(f"sending {req.type!r} messages is not supported")
    inner: dict[str, Any]
    if req.type == "text":
        body = req.text_body if req.text_body is not None else _get_str(req.payload, "body")
        _text(body, "text body", TEXT_MAX)
        preview = req.preview_url or bool((req.payload or {}).get("preview_url"))
        inner = {"body": body, "preview_url": preview}
    else:
        if not isinstance(req.payload, dict) or not req.payload:
            raise InvalidMessage(f"a {req.type} message needs its payload object")
        inner = req.payload
        CHECKS[req.type](inner, req.type)
    message: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": req.to,
        "type": req.type,
        req.type: inner,
        # Echoed by Meta in this message's status webhooks.
        "biz_opaque_callback_data": str(req.message_id),
    }
    if req.context_wamid and req.type != "reaction":
        message["context"] = {"message_id": req.context_wamid}
    return message


def _get_str(payload: dict[str, Any] | None, key: str) -> str | None:
    value = (payload or {}).get(key)
    return value if isinstance(value, str) else None


def _text(value: Any, where: str, limit: int, *, required: bool = True) -> None:
    if value is None and not required:
        return
    if not isinstance(value, str) or not value.strip():
        raise InvalidMessage(f"{where} is required")
    if len(value) > limit:
        raise InvalidMessage(f"{where} is longer than {limit} characters ({len(value)})")


def _dict(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if not isinstance(value, dict):
        raise InvalidMessage(f"{where} is required")
    return value


def _list(parent: dict[str, Any], key: str, where: str) -> list[Any]:
    value = parent.get(key)
    if not isinstance(value, list) or not value:
        raise InvalidMessage(f"{where} needs at least one element")
    return value


def _media(media: dict[str, Any], kind: str) -> None:
    has_id, has_link = bool(media.get("id")), bool(media.get("link"))
    if has_id == has_link:
        raise InvalidMessage(f"a {kind} needs exactly one of id (uploaded media) or link")
    if has_link and not str(media["link"]).startswith(("https://", "http://")):
        raise InvalidMessage(f"the {kind} link must be an http(s) URL")
    if "caption" in media:
        if kind not in CAPTIONED:
            raise InvalidMessage(f"a {kind} cannot have a caption")
        _text(media["caption"], f"{kind} caption", CAPTION_MAX)
    if "filename" in media and kind != "document":
        raise InvalidMessage("only a document has a filename")


def _reaction(reaction: dict[str, Any], _kind: str) -> None:
    _text(reaction.get("message_id"), "reaction message_id", 200)
    if not isinstance(reaction.get("emoji"), str):
        raise InvalidMessage('reaction emoji is required ("" removes the reaction)')


def _location(location: dict[str, Any], _kind: str) -> None:
    for key, bound in (("latitude", 90.0), ("longitude", 180.0)):
        value = location.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidMessage(f"location {key} is required")
        try:
            number = float(value)
        except ValueError:
            raise InvalidMessage(f"location {key} must be a number") from None
        if not -bound <= number <= bound:
            raise InvalidMessage(f"location {key} must be between {-bound} and {bound}")


def _interactive(interactive: dict[str, Any], _kind: str) -> None:
    kind = interactive.get("type")
    header = interactive.get("header")
    if isinstance(header, dict) and header.get("type") == "text":
        _text(header.get("text"), "interactive header text", HEADER_TEXT_MAX)
    footer = interactive.get("footer")
    if footer is not None:
        _text(footer.get("text") if isinstance(footer, dict) else None, "footer", FOOTER_MAX)
    if kind == "button":
        _text(_dict(interactive, "body", "interactive body").get("text"), "body", BUTTON_BODY_MAX)
        buttons = _list(_dict(interactive, "action", "action"), "buttons", "buttons")
        if len(buttons) > BUTTONS_MAX:
            raise InvalidMessage(f"at most {BUTTONS_MAX} reply buttons ({len(buttons)} given)")
        for i, button in enumerate(buttons, 1):
            reply = button.get("reply") if isinstance(button, dict) else None
            if not isinstance(reply, dict):
                raise InvalidMessage(f"button {i} needs a reply object {{id, title}}")
            _text(reply.get("id"), f"button {i} id", 256)
            _text(reply.get("title"), f"button {i} title", BUTTON_TITLE_MAX)
    elif kind == "list":
        _text(_dict(interactive, "body", "interactive body").get("text"), "body", LIST_BODY_MAX)
        action = _dict(interactive, "action", "action")
        _text(action.get("button"), "list button text", LIST_BUTTON_MAX)
        sections = _list(action, "sections", "sections")
        if len(sections) > SECTIONS_MAX:
            raise InvalidMessage(f"at most {SECTIONS_MAX} sections ({len(sections)} given)")
        rows = 0
        for s, section in enumerate(sections, 1):
            if not isinstance(section, dict):
                raise InvalidMessage(f"section {s} must be an object")
            if len(sections) > 1 or "title" in section:
                _text(section.get("title"), f"section {s} title", SECTION_TITLE_MAX)
            for r, row in enumerate(_list(section, "rows", f"section {s} rows"), 1):
                rows += 1
                if not isinstance(row, dict):
                    raise InvalidMessage(f"section {s} row {r} must be an object")
                _text(row.get("id"), f"section {s} row {r} id", ROW_ID_MAX)
                _text(row.get("title"), f"section {s} row {r} title", ROW_TITLE_MAX)
                _text(
                    row.get("description"),
                    f"section {s} row {r} description",
                    ROW_DESCRIPTION_MAX,
                    required=False,
                )
        if rows > ROWS_MAX:
            raise InvalidMessage(f"at most {ROWS_MAX} rows in total ({rows} given)")
    elif not isinstance(kind, str) or not kind:
        raise InvalidMessage("interactive type is required (button, list, ...)")


def _template(template: dict[str, Any], _kind: str) -> None:
    _text(template.get("name"), "template name", 512)
    language = template.get("language")
    if not isinstance(language, dict) or not isinstance(language.get("code"), str):
        raise InvalidMessage("template language {code} is required")
    components = template.get("components", [])
    if not isinstance(components, list):
        raise InvalidMessage("template components must be a list")
    for i, component in enumerate(components, 1):
        if not isinstance(component, dict) or component.get("type") not in TEMPLATE_COMPONENTS:
            raise InvalidMessage(f"template component {i} type must be header, body or button")
        if component["type"] == "button" and (
            not component.get("sub_type") or component.get("index") is None
        ):
            raise InvalidMessage(f"template button component {i} needs sub_type and index")
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
            raise InvalidMessage(f"template component {i} parameters must be objects")
        named = [p for p in parameters if "parameter_name" in p]
        if named and len(named) != len(parameters):
            raise InvalidMessage(
                f"template component {i} mixes named and positional parameters: "
                "named-parameter templates need parameter_name on every parameter"
            )
        for p in parameters:
            if not isinstance(p.get("type"), str):
                raise InvalidMessage(f"template component {i} parameter without a type")


CHECKS = {
    "template": _template,
    "interactive": _interactive,
    "reaction": _reaction,
    "location": _location,
    **{kind: _media for kind in MEDIA_TYPES},
}


def check_against_template(sent: dict[str, Any], stored_components: list[dict[str, Any]]) -> None:
    """Compare the body parameters sent with the placeholders of the approved body text."""
    body = next((c for c in stored_components if str(c.get("type", "")).upper() == "BODY"), None)
    if body is None or not isinstance(body.get("text"), str):
        return
    expected = list(dict.fromkeys(PLACEHOLDER.findall(body["text"])))
    components: list[dict[str, Any]] = sent.get("components") or []
    sent_body: dict[str, Any] = next((c for c in components if c.get("type") == "body"), {})
    given: list[dict[str, Any]] = sent_body.get("parameters") or []
    if len(given) != len(expected):
        raise InvalidMessage(
            f"the template body expects {len(expected)} parameters, {len(given)} given"
        )
    names = {p["parameter_name"] for p in given if "parameter_name" in p}
    if names and not all(n.isdigit() for n in expected) and names != set(expected):
        missing = sorted(set(expected) - names)
        raise InvalidMessage(f"the template body's named parameters are missing {missing}")
