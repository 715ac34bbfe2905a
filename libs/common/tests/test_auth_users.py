"""The copy of auth's users every service keeps: one table shape, one set of handlers."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import MetaData, select

from pytake_common.auth_users import user_handlers, users_table
from pytake_common.event_types import (
    AUTH_USER_ACTIVATED_V1,
    AUTH_USER_CREATED_V1,
    AUTH_USER_DEACTIVATED_V1,
    AUTH_USER_DELETED_V1,
    AUTH_USER_REGISTERED_V1,
    AUTH_USER_UPDATED_V1,
)
from pytake_common.events import CloudEvent

users = users_table(MetaData())
T0 = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)


def user_event(etype: str, org: uuid.UUID, user: uuid.UUID, at: datetime, **data) -> CloudEvent:
    return CloudEvent(
        source="pytake/auth",
        type=etype,
        subject=str(user),
        tenantid=str(org),
        time=at,
        data={"user_id": str(user), "organization_id": str(org), **data},
    )


async def apply(db, handlers, *events: CloudEvent) -> None:
    for event in events:
        async with db.transaction(organization_id=event.tenantid) as session:
            await handlers[event.type](session, event)


async def row(db, user: uuid.UUID):
    async with db.transaction(bypass_rls=True) as session:
        return (await session.execute(select(users).where(users.c.id == user))).mappings().first()


async def test_every_user_event_updates_the_row_and_older_ones_change_nothing(db):
    handlers = user_handlers(users)
    org, user = uuid.uuid4(), uuid.uuid4()
    created = user_event(AUTH_USER_CREATED_V1, org, user, T0, full_name="Ana", role="agent")
    await apply(db, handlers, created)
    got = await row(db, user)
    assert (got["full_name"], got["role"], got["is_active"]) == ("Ana", "agent", True)
    assert got["updated_at"] == T0 and got["deleted_at"] is None

    later = T0 + timedelta(minutes=5)
    renamed = user_event(
        AUTH_USER_UPDATED_V1, org, user, later, full_name="Ana S.", role="org_admin", is_active=True
    )
    stale = user_event(AUTH_USER_UPDATED_V1, org, user, T0 + timedelta(minutes=1), full_name="Old")
    await apply(db, handlers, renamed, stale)
    got = await row(db, user)
    assert (got["full_name"], got["role"], got["updated_at"]) == ("Ana S.", "org_admin", later)

    off = user_event(AUTH_USER_DEACTIVATED_V1, org, user, later + timedelta(minutes=1))
    await apply(db, handlers, off)
    assert (await row(db, user))["is_active"] is False
    on = user_event(AUTH_USER_ACTIVATED_V1, org, user, later + timedelta(minutes=2))
    await apply(db, handlers, on, off)  # the deactivation again: older than the row now
    assert (await row(db, user))["is_active"] is True


async def test_a_deleted_user_is_a_tombstone_and_the_service_hook_runs(db):
    gone: list[tuple[uuid.UUID, uuid.UUID]] = []

    async def on_deleted(session, org, user):
        gone.append((org, user))

    handlers = user_handlers(users, on_deleted=on_deleted)
    org, user = uuid.uuid4(), uuid.uuid4()
    registered = user_event(
        AUTH_USER_REGISTERED_V1, org, user, T0, full_name="Bia", role="org_admin"
    )
    deleted = user_event(AUTH_USER_DELETED_V1, org, user, T0 + timedelta(minutes=1))
    revived = user_event(
        AUTH_USER_UPDATED_V1, org, user, T0 + timedelta(minutes=2), full_name="Zed", is_active=True
    )
    await apply(db, handlers, registered, deleted, revived)
    got = await row(db, user)
    assert got["deleted_at"] == T0 + timedelta(minutes=1) and got["is_active"] is False
    assert got["full_name"] == "Bia"
    assert gone == [(org, user)]


async def test_an_event_about_a_user_not_seen_yet_creates_the_row(db):
    handlers = user_handlers(users)
    org, user = uuid.uuid4(), uuid.uuid4()
    await apply(db, handlers, user_event(AUTH_USER_DEACTIVATED_V1, org, user, T0))
    got = await row(db, user)
    assert got["organization_id"] == org and got["is_active"] is False and got["role"] is None


async def test_a_user_of_another_organization_is_refused(db):
    handlers = user_handlers(users)
    org, other, user = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    forged = user_event(AUTH_USER_CREATED_V1, org, user, T0, role="agent")
    forged = forged.model_copy(update={"tenantid": str(other)})
    with pytest.raises(ValidationError, match="in an event of tenant"):
        await apply(db, handlers, forged)
    assert await row(db, user) is None
    # and a user id never moves to another organization
    await apply(db, handlers, user_event(AUTH_USER_CREATED_V1, org, user, T0, full_name="Ana"))
    moved = user_event(AUTH_USER_UPDATED_V1, other, user, T0 + timedelta(minutes=1), full_name="X")
    await apply(db, handlers, moved)
    got = await row(db, user)
    assert (got["organization_id"], got["full_name"]) == (org, "Ana")
