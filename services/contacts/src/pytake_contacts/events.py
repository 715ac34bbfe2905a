"""Events contacts publishes.

Topics ``pytake.contacts.contact`` (subject = contact id) and ``pytake.contacts.tag``
(subject = tag id).
"""

import uuid
from datetime import datetime
from typing import Any

from pytake_common.events import EventData

TOPIC = "pytake.contacts.contact"
TAG_TOPIC = "pytake.contacts.tag"


class ContactsEvent(EventData):
    """An event contacts publishes."""

    service = "contacts"


class ContactCreated(ContactsEvent):
    """A WhatsApp user wrote to the organization for the first time."""

    event_type = "pytake.contacts.contact.created.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    wa_id: str | None
    user_id: str | None
    name: str | None
    phone: str | None
    #: the contact's custom attributes (absent in events published before they were added)
    attributes: dict[str, Any] | None = None


class ContactUpdated(ContactsEvent):
    """A contact's name (from the WhatsApp profile or set by an agent) or phone changed."""

    event_type = "pytake.contacts.contact.updated.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    name: str | None
    phone: str | None
    changed: list[str]
    #: the contact's custom attributes after the change (absent in older events)
    attributes: dict[str, Any] | None = None


class ContactBlocked(ContactsEvent):
    """An agent blocked the contact (their messages are still recorded; nothing is sent)."""

    event_type = "pytake.contacts.contact.blocked.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    reason: str | None
    blocked_at: datetime
    blocked_by: uuid.UUID


class ContactUnblocked(ContactsEvent):
    event_type = "pytake.contacts.contact.unblocked.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    unblocked_at: datetime
    unblocked_by: uuid.UUID


class ContactConsentChanged(ContactsEvent):
    """The contact's marketing consent was recorded (``source``: where it was given)."""

    event_type = "pytake.contacts.contact.consent_changed.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    marketing_opt_in: bool
    source: str
    changed_at: datetime
    #: why, when PyTake changed it on its own (``meta_131050``: the customer stopped the
    #: business's marketing messages on WhatsApp); null when a person recorded it
    reason: str | None = None


class ContactAssigned(ContactsEvent):
    """The contact's owner changed (``assignee_id`` null: unassigned)."""

    event_type = "pytake.contacts.contact.assigned.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    assignee_id: uuid.UUID | None


class ContactTagged(ContactsEvent):
    event_type = "pytake.contacts.contact.tagged.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    tag_id: uuid.UUID


class ContactUntagged(ContactsEvent):
    event_type = "pytake.contacts.contact.untagged.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    tag_id: uuid.UUID


class ContactErased(ContactsEvent):
    """Privacy erasure: every service erases or anonymises its copies of this contact's data."""

    event_type = "pytake.contacts.contact.erased.v1"
    topic = TOPIC

    contact_id: uuid.UUID
    organization_id: uuid.UUID
    erased_at: datetime


class TagCreated(ContactsEvent):
    event_type = "pytake.contacts.tag.created.v1"
    topic = TAG_TOPIC

    tag_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    color: str


class TagUpdated(ContactsEvent):
    event_type = "pytake.contacts.tag.updated.v1"
    topic = TAG_TOPIC

    tag_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    color: str


class TagDeleted(ContactsEvent):
    """The tag is gone, and with it from every contact that carried it."""

    event_type = "pytake.contacts.tag.deleted.v1"
    topic = TAG_TOPIC

    tag_id: uuid.UUID
    organization_id: uuid.UUID
