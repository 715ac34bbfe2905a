"""Identifiers every service derives the same way without calling another service."""

from __future__ import annotations

import uuid

#: Namespace of PyTake's derived ids (a fixed random UUID; never change it).
PYTAKE_NAMESPACE = uuid.UUID("6f1c3a52-4d0e-4c39-9d5b-8f0e2a7b9c11")


def contact_id_for(
    organization_id: uuid.UUID | str, wa_id: str | None, user_id: str | None = None
) -> uuid.UUID:
    """The contact id of a WhatsApp user in an organization (UUIDv5).

    Keyed by the phone-based ``wa_id`` when Meta sends one, else by the
    business-scoped user id (BSUID), so both kinds of payload resolve.
    """
    if wa_id:
        name = f"{organization_id}:wa:{wa_id}"
    elif user_id:
        name = f"{organization_id}:bsuid:{user_id}"
    else:
        raise ValueError("a WhatsApp user needs a wa_id or a business-scoped user id")
    return uuid.uuid5(PYTAKE_NAMESPACE, name)


def message_id_for_wamid(phone_number_id: str, wamid: str) -> uuid.UUID:
    """A stable UUID for an inbound WhatsApp message (dedupe key across services)."""
    return uuid.uuid5(PYTAKE_NAMESPACE, f"wamid:{phone_number_id}:{wamid}")
