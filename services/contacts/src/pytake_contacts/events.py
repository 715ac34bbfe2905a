"""Events contacts publishes (topic ``pytake.contacts.contact``, subject = contact id)."""

import uuid

from pytake_common.events import EventData

TOPIC = "pytake.contacts.contact"


class ContactCreated(EventData):
    """A WhatsApp user wrote to the organization for the first time."""

    event_type = "pytake.contacts.contact.created.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    wa_id: str | None
    user_id: str | None
    name: str | None
    phone: str | None


class ContactUpdated(EventData):
    """A contact's name (from the WhatsApp profile or set by an agent) or phone changed."""

    event_type = "pytake.contacts.contact.updated.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    name: str | None
    phone: str | None
    changed: list[str]
