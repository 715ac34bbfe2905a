"""Rules of starting a conversation: which number and contact may be written to, which
template may go to whom, and its parameters.

Pure functions over plain values (tested in tests/unit); ``starting.py`` reads the
replicas and applies them.
"""

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pytake_common.errors import DomainError, InvalidInput, NotFound
from pytake_conversations.domain import ContactBlocked
from pytake_conversations.outreach_replicas import DISCONNECTED, REMOVED

APPROVED = "APPROVED"
MARKETING = "MARKETING"


class NumberNotFound(NotFound):
    title = "WhatsApp number not found"


class ContactNotFound(NotFound):
    title = "Contact not found"


class NumberDisconnected(DomainError):
    status, code, title = 422, "number_disconnected", "The WhatsApp number is disconnected"


class ContactErased(DomainError):
    status, code, title = 422, "contact_erased", "The contact's data was erased"


class NoRecipient(DomainError):
    status, code, title = 422, "no_whatsapp_id", "The contact has no WhatsApp id"


class TemplateNotFound(DomainError):
    status, code, title = 422, "template_not_found", "No such template for this number"


class TemplateNotApproved(DomainError):
    status, code, title = 422, "template_not_approved", "The template is not approved"


class ConsentRequired(DomainError):
    status, code, title = (
        422,
        "consent_required",
        "Marketing templates need the contact's marketing consent",
    )


class TemplateParameterMissing(DomainError):
    status, code, title = 422, "template_parameter_missing", "A template parameter has no value"


class TemplateParameterCount(InvalidInput):
    code, title = "template_parameter_count", "Wrong number of template parameters"


class UnknownPlaceholder(InvalidInput):
    code, title = "invalid_placeholder", "Unknown placeholder"


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    language: str
    category: str | None
    status: str
    components: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Contact:
    name: str | None
    phone: str | None
    attributes: Mapping[str, Any]
    marketing_opt_in: bool


@dataclass(frozen=True, slots=True)
class Parameter:
    """One template parameter as asked: text with placeholders, and a fallback."""

    value: str
    default: str | None = None


class GivenParameter(Protocol):
    value: str
    default: str | None


# --- the number and the contact (replica rows; ``None``: this organization has none) ----


#: a replica's row (a mapping of its columns)
Row = TypeVar("Row", bound=Mapping[Any, Any])


def check_number(number: Row | None) -> Row:
    """The number exists in the organization, is not removed and can send."""
    if number is None or number["status"] == REMOVED or not number["phone_number_id"]:
        raise NumberNotFound("no such WhatsApp number in this organization")
    if number["status"] == DISCONNECTED:
        raise NumberDisconnected(
            "the number's access token was refused by Meta; update it to send again"
        )
    return number


def check_contact(contact: Row | None) -> Row:
    """The contact exists in the organization, is not erased and not blocked."""
    if contact is None:
        raise ContactNotFound("no such contact in this organization")
    if contact["erased_at"] is not None:
        raise ContactErased("the contact's data was erased; nothing can be sent to it")
    if contact["blocked"]:
        raise ContactBlocked("the contact is blocked; unblock it to send messages")
    return contact


def check_recipient(wa_id: str | None, user_id: str | None) -> None:
    """There is a WhatsApp id to write to (the contact's, or its conversations')."""
    if not (wa_id or user_id):
        raise NoRecipient("the contact has no WhatsApp id to write to")


def parameters(given: Iterable[str | GivenParameter]) -> list[Parameter]:
    """Parameters as a request gives them: plain text, or ``{value, default}``."""
    return [Parameter(p) if isinstance(p, str) else Parameter(p.value, p.default) for p in given]


def check_template(template: Template, contact: Contact) -> None:
    if template.status.upper() != APPROVED:
        raise TemplateNotApproved(
            f"template {template.name} ({template.language}) is {template.status}; "
            "only approved templates can be sent",
            template_status=template.status,
        )
    if (template.category or "").upper() == MARKETING and not contact.marketing_opt_in:
        raise ConsentRequired(
            "the contact has not given marketing consent; a MARKETING template cannot be sent",
            category=MARKETING,
        )


#: ``{{1}}`` or ``{{first_name}}`` in a template's text (Meta's positional or named form)
TEMPLATE_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
#: ``{{contact.name}}``, ``{{contact.phone}}``, ``{{contact.attributes.<key>}}``
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
ATTRIBUTE = re.compile(r"^contact\.attributes\.([A-Za-z0-9_\-]{1,64})$")


def variables(template: Template, component: str) -> list[str]:
    """The variables of the template's HEADER or BODY text, in order of first appearance."""
    for c in template.components:
        if str(c.get("type", "")).upper() == component and isinstance(c.get("text"), str):
            return list(dict.fromkeys(TEMPLATE_VARIABLE.findall(c["text"])))
    return []


def url_buttons(template: Template) -> list[int]:
    """Indexes of the URL buttons whose address ends in a variable (one parameter each)."""
    found = []
    for c in template.components:
        if str(c.get("type", "")).upper() == "BUTTONS":
            for i, button in enumerate(c.get("buttons") or []):
                url = button.get("url") if isinstance(button, Mapping) else None
                kind = str(button.get("type", "")).upper() if isinstance(button, Mapping) else ""
                if kind == "URL" and isinstance(url, str) and TEMPLATE_VARIABLE.search(url):
                    found.append(i)
    return found


def _count(template: Template, kind: str, expected: int, given: int) -> None:
    if given != expected:
        raise TemplateParameterCount(
            f"template {template.name} takes {expected} {kind} parameter(s), {given} given",
            component=kind,
            expected=expected,
            given=given,
        )


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v is not None)
    text = str(value).strip()
    return text or None


def contact_value(placeholder: str, contact: Contact) -> str | None:
    """The contact's value a placeholder names (None: the contact has none)."""
    if placeholder == "contact.name":
        return _as_text(contact.name)
    if placeholder == "contact.phone":
        return _as_text(contact.phone)
    if match := ATTRIBUTE.match(placeholder):
        return _as_text(contact.attributes.get(match.group(1)))
    raise UnknownPlaceholder(
        f"unknown placeholder {{{{{placeholder}}}}}; use contact.name, contact.phone or "
        "contact.attributes.<key>",
        placeholder=placeholder,
    )


def fill(parameter: Parameter, contact: Contact, label: str) -> str:
    """The parameter's text with the contact's values; its default when one is missing."""
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        found = contact_value(match.group(1), contact)
        if found is None:
            missing.append(match.group(1))
            return ""
        return found

    text = PLACEHOLDER.sub(value, parameter.value).strip()
    if missing or not text:
        if parameter.default is not None and parameter.default.strip():
            return parameter.default.strip()
        raise TemplateParameterMissing(
            f"template parameter {label} has no value for this contact"
            + (f" ({', '.join(missing)} is empty)" if missing else "")
            + " and no default",
            parameter=label,
            placeholders=missing,
        )
    return text


def components(
    template: Template,
    body: Sequence[Parameter],
    header: Sequence[Parameter],
    contact: Contact,
    buttons: Sequence[Parameter] = (),
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """WhatsApp's ``components`` for the template filled for ``contact``, and the values
    by variable (``"body.1"``, ``"header.1"``, ``"button.0"``) for showing the message."""
    out: list[dict[str, Any]] = []
    values: dict[str, str] = {}
    for kind, given in (("header", header), ("body", body)):
        names = variables(template, kind.upper())
        _count(template, kind, len(names), len(given))
        if not names:
            continue
        named = not all(n.isdigit() for n in names)
        parameters = []
        for name, parameter in zip(names, given, strict=True):
            text = fill(parameter, contact, f"{kind}.{name}")
            values[f"{kind}.{name}"] = text
            item: dict[str, Any] = {"type": "text", "text": text}
            if named:
                item["parameter_name"] = name
            parameters.append(item)
        out.append({"type": kind, "parameters": parameters})
    indexes = url_buttons(template)
    _count(template, "button", len(indexes), len(buttons))
    for index, parameter in zip(indexes, buttons, strict=True):
        text = fill(parameter, contact, f"button.{index}")
        values[f"button.{index}"] = text
        out.append(
            {
                "type": "button",
                "sub_type": "url",
                "index": str(index),
                "parameters": [{"type": "text", "text": text}],
            }
        )
    return out, values


def rendered_body(template: Template, values: Mapping[str, str]) -> str | None:
    """The template's body text as the customer reads it (what the inbox shows)."""
    for c in template.components:
        if str(c.get("type", "")).upper() == "BODY" and isinstance(c.get("text"), str):
            text: str = c["text"]
            return TEMPLATE_VARIABLE.sub(lambda m: values.get(f"body.{m.group(1)}", ""), text)
    return None
