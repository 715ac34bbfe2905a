"""Validation of Graph API send bodies, with Meta's limits and ``(#100)`` messages.

Checks are deliberately basic (required fields and the documented limits in
WHATSAPP.md): enough to catch a client that would be rejected by Meta, not a
full reimplementation of Meta's rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pytake_meta_simulator.errors import GraphError
from pytake_meta_simulator.ids import normalize_wa_id

MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
MESSAGE_TYPES = frozenset(
    {"text", "reaction", "template", "interactive", "location", "contacts"} | MEDIA_TYPES
)
INTERACTIVE_TYPES = frozenset(
    {
        "button",
        "list",
        "cta_url",
        "flow",
        "product",
        "product_list",
        "catalog_message",
        "location_request_message",
        "address_message",
        "call_permission_request",
    }
)
TEMPLATE_COMPONENTS = frozenset({"header", "body", "button", "carousel", "limited_time_offer"})


@dataclass(frozen=True, slots=True)
class SendRequest:
    to: str
    wa_id: str
    type: str


def _fail(message: str) -> GraphError:
    return GraphError.invalid_parameter(message)


def _obj(parent: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = parent.get(key)
    if value is None:
        raise _fail(f"The parameter {where} is required.")
    if not isinstance(value, dict):
        raise _fail(f"Param {where} must be a JSON object.")
    return value


def _list(parent: dict[str, Any], key: str, where: str, *, lo: int, hi: int) -> list[Any]:
    value = parent.get(key)
    if value is None:
        raise _fail(f"The parameter {where} is required.")
    if not isinstance(value, list):
        raise _fail(f"Param {where} must be an array.")
    if not lo <= len(value) <= hi:
        raise _fail(f"Param {where} must have between {lo} and {hi} elements.")
    return value


def _str(
    parent: dict[str, Any],
    key: str,
    where: str,
    *,
    max_len: int | None = None,
    allow_empty: bool = False,
) -> str:
    """A required string."""
    value = _opt_str(parent, key, where, max_len=max_len, allow_empty=allow_empty)
    if value is None:
        raise _fail(f"The parameter {where} is required.")
    return value


def _opt_str(
    parent: dict[str, Any],
    key: str,
    where: str,
    *,
    max_len: int | None = None,
    allow_empty: bool = False,
) -> str | None:
    """An optional string: None when absent, checked when present."""
    value = parent.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(f"Param {where} must be a string.")
    if not allow_empty and not value.strip():
        raise _fail(f"Param {where} must be a non-empty string.")
    if max_len is not None and len(value) > max_len:
        raise _fail(f"Param {where} must be at most {max_len} characters long.")
    return value


def _text_block(parent: dict[str, Any], key: str, where: str, max_len: int) -> None:
    """Optional ``{text}`` objects such as interactive ``footer``."""
    if parent.get(key) is None:
        return
    block = _obj(parent, key, where)
    _str(block, "text", f"{where}['text']", max_len=max_len)


def validate_send(body: dict[str, Any]) -> SendRequest:
    """Validate a send body; raise :class:`GraphError` (HTTP 400, code 100) like Meta."""
    _messaging_product(body)
    recipient_type = body.get("recipient_type")
    if recipient_type is not None and recipient_type != "individual":
        raise _fail(f'Param recipient_type must be one of {{INDIVIDUAL}} - got "{recipient_type}".')
    to = _str(body, "to", "to")
    type_ = body.get("type", "text")
    if not isinstance(type_, str) or type_ not in MESSAGE_TYPES:
        allowed = ", ".join(sorted(t.upper() for t in MESSAGE_TYPES))
        raise _fail(f'Param type must be one of {{{allowed}}} - got "{type_}".')
    if type_ == "contacts":
        # ``contacts`` is the one message type whose content is an array.
        _contacts(_list(body, "contacts", "contacts", lo=1, hi=257))
    elif type_ in MEDIA_TYPES:
        _media(_obj(body, type_, type_), type_)
    else:
        _VALIDATORS[type_](_obj(body, type_, type_))
    if body.get("context") is not None:
        _str(_obj(body, "context", "context"), "message_id", "context['message_id']")
    _opt_str(body, "biz_opaque_callback_data", "biz_opaque_callback_data", max_len=512)
    return SendRequest(to=to, wa_id=normalize_wa_id(to), type=type_)


def validate_mark_read(body: dict[str, Any]) -> str:
    """Validate ``{"messaging_product","status":"read","message_id"}``; return the message id."""
    _messaging_product(body)
    if body.get("status") != "read":
        raise _fail(f'Param status must be one of {{READ}} - got "{body.get("status")}".')
    message_id = _str(body, "message_id", "message_id")
    return message_id


def _messaging_product(body: dict[str, Any]) -> None:
    product = body.get("messaging_product")
    if product is None:
        raise _fail("The parameter messaging_product is required.")
    if product != "whatsapp":
        raise _fail(f'Param messaging_product must be one of {{WHATSAPP}} - got "{product}".')


def _text(text: dict[str, Any]) -> None:
    _str(text, "body", "text['body']", max_len=4096)
    preview = text.get("preview_url")
    if preview is not None and not isinstance(preview, bool):
        raise _fail("Param text['preview_url'] must be a boolean.")


def _media(media: dict[str, Any], type_: str) -> None:
    has_id = media.get("id") is not None
    has_link = media.get("link") is not None
    if has_id == has_link:
        raise _fail(f"Param {type_} must contain exactly one of {type_}['id'] or {type_}['link'].")
    if has_id:
        _str(media, "id", f"{type_}['id']")
    else:
        link = _str(media, "link", f"{type_}['link']")
        if not link.startswith(("https://", "http://")):
            raise _fail(f"Param {type_}['link'] must be a valid URL.")
    _opt_str(media, "caption", f"{type_}['caption']", max_len=1024)
    _opt_str(media, "filename", f"{type_}['filename']", max_len=240)


def _reaction(reaction: dict[str, Any]) -> None:
    _str(reaction, "message_id", "reaction['message_id']")
    # An empty emoji removes the reaction, so only its type is checked.
    _str(reaction, "emoji", "reaction['emoji']", allow_empty=True)


def _location(location: dict[str, Any]) -> None:
    for key, bound in (("latitude", 90.0), ("longitude", 180.0)):
        value = location.get(key)
        if value is None:
            raise _fail(f"The parameter location['{key}'] is required.")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise _fail(f"Param location['{key}'] must be a number.") from None
        if not -bound <= number <= bound:
            raise _fail(f"Param location['{key}'] must be between {-bound} and {bound}.")


def _contacts(contacts: list[Any]) -> None:
    for i, contact in enumerate(contacts):
        where = f"contacts[{i}]"
        if not isinstance(contact, dict):
            raise _fail(f"Param {where} must be a JSON object.")
        name = _obj(contact, "name", f"{where}['name']")
        _str(name, "formatted_name", f"{where}['name']['formatted_name']")


def _template(template: dict[str, Any]) -> None:
    _str(template, "name", "template['name']", max_len=512)
    language = _obj(template, "language", "template['language']")
    _str(language, "code", "template['language']['code']")
    components = template.get("components")
    if components is None:
        return
    if not isinstance(components, list):
        raise _fail("Param template['components'] must be an array.")
    named: set[bool] = set()
    for i, component in enumerate(components):
        where = f"template['components'][{i}]"
        if not isinstance(component, dict):
            raise _fail(f"Param {where} must be a JSON object.")
        kind = _str(component, "type", f"{where}['type']")
        if kind not in TEMPLATE_COMPONENTS:
            raise _fail(f"Param {where}['type'] is invalid - got \"{kind}\".")
        if kind == "button":
            _str(component, "sub_type", f"{where}['sub_type']")
            index = component.get("index")
            if index is None or not str(index).isdigit() or int(str(index)) > 9:
                raise _fail(f"Param {where}['index'] must be an integer between 0 and 9.")
        parameters = component.get("parameters", [])
        if not isinstance(parameters, list):
            raise _fail(f"Param {where}['parameters'] must be an array.")
        for j, parameter in enumerate(parameters):
            pwhere = f"{where}['parameters'][{j}]"
            if not isinstance(parameter, dict):
                raise _fail(f"Param {pwhere} must be a JSON object.")
            _str(parameter, "type", f"{pwhere}['type']")
            named.add(parameter.get("parameter_name") is not None)
    if len(named) > 1:
        raise _fail(
            "Param template['components'] mixes named and positional parameters: "
            "named-parameter templates need parameter_name on every parameter."
        )


def _interactive(interactive: dict[str, Any]) -> None:
    kind = _str(interactive, "type", "interactive['type']")
    if kind not in INTERACTIVE_TYPES:
        allowed = ", ".join(sorted(INTERACTIVE_TYPES))
        raise _fail(f"Param interactive['type'] must be one of {{{allowed}}} - got \"{kind}\".")
    action = _obj(interactive, "action", "interactive['action']")
    if kind not in ("product", "catalog_message") or interactive.get("body") is not None:
        body = _obj(interactive, "body", "interactive['body']")
        _str(body, "text", "interactive['body']['text']", max_len=1024)
    _text_block(interactive, "footer", "interactive['footer']", 60)
    header = interactive.get("header")
    if isinstance(header, dict) and header.get("type") == "text":
        _str(header, "text", "interactive['header']['text']", max_len=60)
    if kind == "button":
        _buttons(action)
    elif kind == "list":
        _list_action(action)
    elif kind == "cta_url":
        params = _obj(action, "parameters", "interactive['action']['parameters']")
        _str(
            params,
            "display_text",
            "interactive['action']['parameters']['display_text']",
            max_len=20,
        )
        _str(params, "url", "interactive['action']['parameters']['url']")


def _buttons(action: dict[str, Any]) -> None:
    buttons = _list(action, "buttons", "interactive['action']['buttons']", lo=1, hi=3)
    ids: set[str] = set()
    titles: set[str] = set()
    for i, button in enumerate(buttons):
        where = f"interactive['action']['buttons'][{i}]"
        if not isinstance(button, dict):
            raise _fail(f"Param {where} must be a JSON object.")
        if button.get("type") != "reply":
            raise _fail(f"Param {where}['type'] must be one of {{REPLY}}.")
        reply = _obj(button, "reply", f"{where}['reply']")
        button_id = _str(reply, "id", f"{where}['reply']['id']", max_len=256)
        title = _str(reply, "title", f"{where}['reply']['title']", max_len=20)
        if button_id in ids or title in titles:
            raise _fail("Buttons must have unique ids and titles.")
        ids.add(button_id)
        titles.add(title)


def _list_action(action: dict[str, Any]) -> None:
    _str(action, "button", "interactive['action']['button']", max_len=20)
    sections = _list(action, "sections", "interactive['action']['sections']", lo=1, hi=10)
    row_ids: set[str] = set()
    for i, section in enumerate(sections):
        where = f"interactive['action']['sections'][{i}]"
        if not isinstance(section, dict):
            raise _fail(f"Param {where} must be a JSON object.")
        if len(sections) > 1:
            _str(section, "title", f"{where}['title']", max_len=24)
        else:
            _opt_str(section, "title", f"{where}['title']", max_len=24)
        rows = _list(section, "rows", f"{where}['rows']", lo=1, hi=10)
        for j, row in enumerate(rows):
            rwhere = f"{where}['rows'][{j}]"
            if not isinstance(row, dict):
                raise _fail(f"Param {rwhere} must be a JSON object.")
            row_id = _str(row, "id", f"{rwhere}['id']", max_len=200)
            _str(row, "title", f"{rwhere}['title']", max_len=24)
            _opt_str(row, "description", f"{rwhere}['description']", max_len=72)
            if row_id in row_ids:
                raise _fail("List rows must have unique ids.")
            row_ids.add(row_id)
    if len(row_ids) > 10:
        raise _fail("Param interactive['action']['sections'] must have at most 10 rows in total.")


_VALIDATORS: dict[str, Callable[[dict[str, Any]], None]] = {
    "text": _text,
    "reaction": _reaction,
    "location": _location,
    "template": _template,
    "interactive": _interactive,
}
