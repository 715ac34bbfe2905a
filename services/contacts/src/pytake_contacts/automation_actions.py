"""Applying automation's ``actions_requested``: the contact's part, in list order.

Contacts owns ``add_tag``, ``remove_tag`` (by ``tag_id`` or ``tag_name``, case-insensitive)
and ``set_attribute`` (validated against the organization's attribute definitions, ``null``
removes). Each action is claimed once by its ``action_id`` (``automation_actions``) in the
inbox's transaction and applied in a savepoint; one that cannot apply (an unknown tag or
attribute, an erased contact) is recorded with its problem code and the next still run.
The events are the ones an agent's change publishes (``contact.tagged``, ``contact.updated``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.applied_actions import apply_once
from pytake_common.consumer import Handler
from pytake_common.errors import NotFound
from pytake_common.event_types import AUTOMATION_SESSION_ACTIONS_REQUESTED_V1
from pytake_common.events import CloudEvent, TenantEventData
from pytake_common.outbox import emit
from pytake_contacts.actions import retag
from pytake_contacts.domain import merge_attributes
from pytake_contacts.events import ContactUpdated
from pytake_contacts.store import attribute_schema, load_contact, load_tag, set_values
from pytake_contacts.tables import automation_actions, tags


class ActionsRequested(TenantEventData):
    organization_id: uuid.UUID
    contact_id: uuid.UUID
    actions: list[dict[str, Any]]


class UnknownTag(NotFound):
    code, title = "unknown_tag", "No such tag in this organization"


Apply = Callable[[AsyncSession, RowMapping, dict[str, Any]], Awaitable[str]]


async def _tag_id(session: AsyncSession, org: uuid.UUID, action: dict[str, Any]) -> uuid.UUID:
    if action.get("tag_id"):
        tag = await load_tag(session, org, uuid.UUID(str(action["tag_id"])))
        return uuid.UUID(str(tag["id"]))
    found = await session.scalar(
        select(tags.c.id).where(
            tags.c.organization_id == org,
            func.lower(tags.c.name) == str(action.get("tag_name", "")).lower(),
        )
    )
    if found is None:
        raise UnknownTag(f"no tag named {action.get('tag_name')!r}")
    return uuid.UUID(str(found))


async def add_tag(session: AsyncSession, contact: RowMapping, action: dict[str, Any]) -> str:
    return await _retag(session, contact, action, add=True)


async def remove_tag(session: AsyncSession, contact: RowMapping, action: dict[str, Any]) -> str:
    return await _retag(session, contact, action, add=False)


async def _retag(
    session: AsyncSession, contact: RowMapping, action: dict[str, Any], *, add: bool
) -> str:
    """Tag or untag, and publish what an agent's change publishes, if anything changed."""
    org, contact_id = contact["organization_id"], contact["id"]
    tag_id = await _tag_id(session, org, action)
    changed = await retag(session, org, contact_id, tag_id, add=add)
    return "applied" if changed else "unchanged"


async def set_attribute(session: AsyncSession, contact: RowMapping, action: dict[str, Any]) -> str:
    org, contact_id = contact["organization_id"], contact["id"]
    schema = await attribute_schema(session, org)
    current = contact["attributes"] or {}
    merged = merge_attributes(schema, current, {str(action["key"]): action.get("value")})
    if merged == current:
        return "unchanged"
    await set_values(session, org, contact_id, attributes=merged)
    payload = ContactUpdated(
        contact_id=contact_id,
        organization_id=org,
        name=contact["name"],
        phone=contact["phone"],
        changed=["attributes"],
        attributes=merged,
    )
    await emit(session, payload, contact_id, org)
    return "applied"


APPLY: dict[str, Apply] = {
    "add_tag": add_tag,
    "remove_tag": remove_tag,
    "set_attribute": set_attribute,
}


async def on_actions_requested(session: AsyncSession, event: CloudEvent) -> None:
    data = event.parse_data(ActionsRequested)
    org = data.organization_id
    for action in data.actions:
        apply = APPLY.get(str(action.get("type")))
        if apply is None:
            continue  # conversations' (or a newer type)
        values = {"organization_id": org, "contact_id": data.contact_id, "type": action["type"]}

        async def applying(apply: Apply = apply, action: dict[str, Any] = action) -> str:
            contact = await load_contact(session, org, data.contact_id, lock=True)
            if contact["erased_at"] is not None:
                return "contact_erased"
            return await apply(session, contact, action)

        action_id = uuid.UUID(str(action["action_id"]))
        await apply_once(session, automation_actions, action_id, values, applying)


AUTOMATION_HANDLERS: dict[str, Handler] = {
    AUTOMATION_SESSION_ACTIONS_REQUESTED_V1: on_actions_requested,
}
