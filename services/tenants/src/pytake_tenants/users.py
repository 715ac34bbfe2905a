"""The replica of auth's users: who may join a department, and who counts as an agent.

Auth keys its user events by user id, so one user's events arrive in order. A
deleted user is a tombstone: later (replayed) events about it change nothing.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_tenants.departments import drop_member_everywhere
from pytake_tenants.tables import users


async def upsert(session: AsyncSession, org: uuid.UUID, user_id: uuid.UUID, **fields: Any) -> None:
    """Create or update a live user; a deleted one stays deleted."""
    insert_values = {"is_active": True, **fields}
    stmt = pg_insert(users).values(id=user_id, organization_id=org, **insert_values)
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={**fields, "updated_at": func.now()},
            where=users.c.deleted_at.is_(None) & (users.c.organization_id == org),
        )
    )


async def set_active(
    session: AsyncSession, org: uuid.UUID, user_id: uuid.UUID, active: bool
) -> None:
    await upsert(session, org, user_id, is_active=active)


async def delete(session: AsyncSession, org: uuid.UUID, user_id: uuid.UUID) -> None:
    exists = await session.scalar(select(users.c.id).where(users.c.id == user_id))
    if exists is None:
        await session.execute(
            pg_insert(users)
            .values(id=user_id, organization_id=org, is_active=False, deleted_at=func.now())
            .on_conflict_do_nothing()
        )
    else:
        await session.execute(
            update(users)
            .where(users.c.id == user_id, users.c.deleted_at.is_(None))
            .values(is_active=False, deleted_at=func.now(), updated_at=func.now())
        )
    await drop_member_everywhere(session, org, user_id)
