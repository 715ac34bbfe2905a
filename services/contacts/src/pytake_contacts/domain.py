"""Contact rules: phone numbers, names, e-mail, custom attributes, tag colours, search terms."""

import hashlib
import re
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlsplit

import phonenumbers

from pytake_common.errors import Conflict, InvalidInput

MAX_NAME = 256
MAX_EMAIL = 320
MAX_COMPANY = 256
MAX_JOB_TITLE = 256
MAX_NOTES = 10_000
MAX_LANGUAGE = 35
MAX_TEXT_ATTRIBUTE = 1_000
MAX_LINK = 2_048
MAX_ATTRIBUTES = 100

#: Where a contact's name came from: the customer's WhatsApp profile (kept in sync with
#: each inbound message) or an agent (then profile names no longer overwrite it).
PROFILE = "profile"
AGENT = "agent"

ATTRIBUTE_TYPES = ("text", "number", "date", "boolean", "list", "link")
ATTRIBUTE_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
COLOR_RE = re.compile(r"^#[0-9A-Fa-f]{6}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LANGUAGE_RE = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")
PHONEISH_RE = re.compile(r"^[\d\s+().\-/]+$")


class InvalidPhone(InvalidInput):
    code, title = "invalid_phone", "Invalid phone number"


class UnknownAttribute(InvalidInput):
    code, title = "unknown_attribute", "Unknown custom attribute"


class InvalidAttributeValue(InvalidInput):
    code, title = "invalid_attribute", "Invalid custom attribute value"


class InvalidAssignee(InvalidInput):
    code, title = "invalid_assignee", "Assignee cannot own contacts"


class ContactExists(Conflict):
    code, title = "contact_exists", "Contact already exists"


class TagNameTaken(Conflict):
    code, title = "tag_name_taken", "Tag name already in use"


class AttributeKeyTaken(Conflict):
    code, title = "attribute_exists", "Custom attribute already defined"


def phone_from_wa_id(wa_id: str | None) -> str | None:
    """The E.164 phone number behind a phone-based WhatsApp id, or None.

    ``wa_id`` is the customer's number in international format without the ``+``;
    anything ``phonenumbers`` cannot parse into a possible number stays unknown
    (a business-scoped id, a username, a malformed value).
    """
    if not wa_id or not wa_id.isdigit():
        return None
    try:
        number = phonenumbers.parse("+" + wa_id, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_phone(raw: str) -> str:
    """A phone typed by a person (international format, ``+`` optional) as E.164.

    Raises :class:`InvalidPhone` with the reason when it is not a valid number.
    """
    value = raw.strip()
    if not value or len(value) > 40 or not PHONEISH_RE.match(value):
        raise InvalidPhone(f"{raw!r} is not a phone number", field="phone")
    if not value.startswith("+"):
        value = "+" + value.lstrip("0")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhone(
            f"{raw!r} is not a phone number in international format (+country code)",
            field="phone",
        ) from exc
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhone(f"{raw!r} is not a valid phone number", field="phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def wa_id_for_phone(e164: str) -> str:
    """The WhatsApp id Meta uses for a phone: its E.164 digits without ``+``."""
    return e164.lstrip("+")


def clean_name(name: str | None) -> str | None:
    """A display name trimmed to what we store; blank names are no names."""
    if name is None:
        return None
    name = " ".join(name.split())
    return name[:MAX_NAME] or None


def clean_email(email: str) -> str:
    value = email.strip().lower()
    if len(value) > MAX_EMAIL or not EMAIL_RE.match(value):
        raise InvalidInput(f"{email!r} is not an e-mail address", field="email")
    return value


def clean_language(language: str) -> str:
    value = language.strip()
    if len(value) > MAX_LANGUAGE or not LANGUAGE_RE.match(value):
        raise InvalidInput(f"{language!r} is not a language tag (e.g. pt-BR)", field="language")
    return value.replace("_", "-")


def clean_color(color: str) -> str:
    if not COLOR_RE.match(color):
        raise InvalidInput(f"{color!r} is not a colour like #1A2B3C", field="color")
    return color.upper()


def erased_identifier(organization_id: object, value: str) -> str:
    """What replaces a WhatsApp identifier on erasure: a one-way hash, unique per org."""
    return hashlib.sha256(f"{organization_id}:{value}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AttributeDefinition:
    key: str
    type: str
    allowed_values: list[str] | None = None


def _attribute_value(definition: AttributeDefinition, value: Any) -> Any:
    kind = definition.type
    if kind == "text" and isinstance(value, str) and len(value) <= MAX_TEXT_ATTRIBUTE:
        return value
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    if kind == "date" and isinstance(value, str):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass
    if kind == "list" and isinstance(value, str) and value in (definition.allowed_values or []):
        return value
    if kind == "link" and isinstance(value, str) and len(value) <= MAX_LINK:
        parts = urlsplit(value)
        if parts.scheme in ("http", "https") and parts.netloc:
            return value
    expected = {
        "text": f"text of at most {MAX_TEXT_ATTRIBUTE} characters",
        "number": "a number",
        "boolean": "true or false",
        "date": "a date (YYYY-MM-DD)",
        "list": f"one of {definition.allowed_values}",
        "link": "an http(s) URL",
    }[kind]
    raise InvalidAttributeValue(
        f"attribute {definition.key!r} must be {expected}", attribute=definition.key
    )


def merge_attributes(
    definitions: dict[str, AttributeDefinition],
    current: dict[str, Any],
    changes: dict[str, Any],
) -> dict[str, Any]:
    """``current`` with ``changes`` applied (``None`` removes a key), every value validated."""
    merged = dict(current)
    for key, value in changes.items():
        definition = definitions.get(key)
        if definition is None:
            raise UnknownAttribute(
                f"attribute {key!r} is not defined for this organization", attribute=key
            )
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = _attribute_value(definition, value)
    if len(merged) > MAX_ATTRIBUTES:
        raise InvalidAttributeValue(f"at most {MAX_ATTRIBUTES} attributes per contact")
    return merged


def parse_attribute_text(definition: AttributeDefinition, raw: str) -> Any:
    """A CSV cell as the attribute's typed value ("" means unset)."""
    text = raw.strip()
    if text == "":
        return None
    if definition.type == "number":
        try:
            number = float(text)
        except ValueError:
            return text  # rejected with the usual message by _attribute_value
        return int(number) if number.is_integer() and "." not in text else number
    if definition.type == "boolean":
        lowered = text.lower()
        if lowered in ("true", "yes", "1"):
            return True
        if lowered in ("false", "no", "0"):
            return False
    return text


def search_digits(q: str) -> str | None:
    """The digits of ``q`` when it looks like a phone number (any format), else None.

    Any other ``q`` is searched by words (split, unaccented and lower-cased by
    PostgreSQL's ``pytake_search_words``, as the contacts' own words are).
    """
    value = q.strip()
    if not PHONEISH_RE.match(value):
        return None
    digits = re.sub(r"\D", "", value)
    return digits if len(digits) >= 3 else None
