"""Contact rules: phone numbers from WhatsApp ids, display names."""

import phonenumbers

MAX_NAME = 256

#: Where a contact's name came from: the customer's WhatsApp profile (kept in sync with
#: each inbound message) or an agent (then profile names no longer overwrite it).
PROFILE = "profile"
AGENT = "agent"


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


def clean_name(name: str | None) -> str | None:
    """A display name trimmed to what we store; blank names are no names."""
    if name is None:
        return None
    name = " ".join(name.split())
    return name[:MAX_NAME] or None
