"""Persistence of user administration: listing, counting, locking, mass revocation.

Every function runs in a transaction bound to the organization (RLS) and
filters on it too. Deleted users (``deleted_at``) are invisible here.
"""

from __future__ import annotations

import uuid
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_auth import store
from pytake_auth.events import UserSessionsRevoked
from pytake_auth.tables import refresh_tokens, sessions, users
from pytake_common.outbox import emit
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset

ADMIN_ROLES = ("org_admin", "super_admin")
#: Advisory lock ``(namespace, organization)``: both are signed 32-bit integers.
LOCK_NAMESPACE = zlib.crc32(b"pytake-auth-organization-users") - 2**31


@dataclass(frozen=True, slots=True)
class Member:
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    full_name: str
    role: str
    is_active: bool
    last_login_at: datetime | None
    created_at: datetime
    updated_at: datetime


_MEMBER = (
    users.c.id,
    users.c.organization_id,
    users.c.email,
    users.c.full_name,
    users.c.role,
    users.c.is_active,
    users.c.last_login_at,
    users.c.created_at,
    users.c.updated_at,
)


async def lock_organization(session: AsyncSession, organization_id: uuid.UUID) -> None:
    """Serialise membership changes of one organization (admin count, plan limit)."""
    key = zlib.crc32(organization_id.bytes) - 2**31
    await session.execute(
        select(
            func.pg_advisory_xact_lock(literal(LOCK_NAMESPACE, Integer()), literal(key, Integer()))
        )
    )


async def get_member(
    session: AsyncSession,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> Member | None:
    query = select(*_MEMBER).where(
        users.c.organization_id == organization_id,
        users.c.id == user_id,
        users.c.deleted_at.is_(None),
    )
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return Member(*row) if row is not None else None


#: the members list, by (created_at, id)
MEMBERS = keyset("users", TIMESTAMP, ROW_ID)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def list_members(
    session: AsyncSession,
    organization_id: uuid.UUID,
    *,
    role: str | None,
    is_active: bool | None,
    q: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Member], str | None]:
    """A page ordered by creation (oldest first) and the cursor of the next one."""
    conditions: list[Any] = [
        users.c.organization_id == organization_id,
        users.c.deleted_at.is_(None),
    ]
    if role is not None:
        conditions.append(users.c.role == role)
    if is_active is not None:
        conditions.append(users.c.is_active.is_(is_active))
    if q:
        pattern = _like(q.strip())
        conditions.append(
            or_(
                users.c.email.ilike(pattern, escape="\\"),
                users.c.full_name.ilike(pattern, escape="\\"),
            )
        )
    if cursor:
        created, ident = MEMBERS.decode(cursor)
        conditions.append(
            or_(
                users.c.created_at > created,
                and_(users.c.created_at == created, users.c.id > ident),
            )
        )
    rows = (
        await session.execute(
            select(*_MEMBER)
            .where(*conditions)
            .order_by(users.c.created_at, users.c.id)
            .limit(limit + 1)
        )
    ).all()
    members = [Member(*r) for r in rows[:limit]]
    last = members[-1]
    following = MEMBERS.encode((last.created_at, last.id)) if len(rows) > limit else None
    return members, following


async def count_active(session: AsyncSession, organization_id: uuid.UUID) -> int:
    count: int = (
        await session.scalar(
            select(func.count())
            .select_from(users)
            .where(
                users.c.organization_id == organization_id,
                users.c.is_active.is_(True),
                users.c.deleted_at.is_(None),
            )
        )
        or 0
    )
    return count


async def count_active_admins(session: AsyncSession, organization_id: uuid.UUID) -> int:
    count: int = (
        await session.scalar(
            select(func.count())
            .select_from(users)
            .where(
                users.c.organization_id == organization_id,
                users.c.is_active.is_(True),
                users.c.deleted_at.is_(None),
                users.c.role.in_(ADMIN_ROLES),
            )
        )
        or 0
    )
    return count


async def update_member(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID, **values: Any
) -> Member:
    await session.execute(
        update(users)
        .where(users.c.organization_id == organization_id, users.c.id == user_id)
        .values(updated_at=func.now(), **values)
    )
    member = await get_member(session, organization_id, user_id)
    assert member is not None  # locked by the caller
    return member


async def mark_deleted(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    """Soft-delete: never signs in again (no verifiable hash), e-mail anonymised and free."""
    await session.execute(
        update(users)
        .where(users.c.organization_id == organization_id, users.c.id == user_id)
        .values(
            is_active=False,
            deleted_at=func.now(),
            updated_at=func.now(),
            email=f"deleted+{user_id}@invalid",
            password_hash="!deleted",
        )
    )


async def revoke_all_sessions(
    session: AsyncSession, organization_id: uuid.UUID, user_id: uuid.UUID, *, reason: str
) -> datetime:
    """End every session of the user and emit ``user.sessions_revoked`` (one event)."""
    now: datetime = (await session.execute(select(func.now()))).scalar_one()
    await session.execute(
        update(sessions)
        .where(
            sessions.c.organization_id == organization_id,
            sessions.c.user_id == user_id,
            sessions.c.revoked_at.is_(None),
        )
        .values(revoked_at=now, revoked_reason=reason)
    )
    await session.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.organization_id == organization_id,
            refresh_tokens.c.user_id == user_id,
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    payload = UserSessionsRevoked(
        user_id=user_id, organization_id=organization_id, reason=reason, revoked_before=now
    )
    await emit(session, payload, user_id, organization_id)
    return now


async def revoke_other_sessions(
    session: AsyncSession,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    keep: uuid.UUID,
) -> int:
    """End every live session of the user but ``keep`` (``session.revoked`` each)."""
    others = (
        (
            await session.execute(
                select(sessions.c.id).where(
                    sessions.c.organization_id == organization_id,
                    sessions.c.user_id == user_id,
                    sessions.c.id != keep,
                    sessions.c.revoked_at.is_(None),
                    sessions.c.expires_at > func.now(),
                )
            )
        )
        .scalars()
        .all()
    )
    for session_id in others:
        await store.revoke_session(
            session, organization_id, session_id, user_id, reason="password_changed"
        )
    return len(others)


async def rotate_session_tokens(
    session: AsyncSession, settings: Any, user: store.User, session_id: uuid.UUID
) -> str | None:
    """Replace the live refresh tokens of one session by a fresh one (None: session ended)."""
    row = (
        await session.execute(
            select(sessions.c.expires_at)
            .where(
                sessions.c.organization_id == user.organization_id,
                sessions.c.id == session_id,
                sessions.c.user_id == user.id,
                sessions.c.revoked_at.is_(None),
                sessions.c.expires_at > func.now(),
            )
            .with_for_update()
        )
    ).first()
    if row is None:
        return None
    now: datetime = (await session.execute(select(func.now()))).scalar_one()
    # Marked revoked, not deleted: presenting one later counts as reuse.
    await session.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.organization_id == user.organization_id,
            refresh_tokens.c.session_id == session_id,
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.used_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return await store.issue_refresh_token(session, settings, user, session_id, row.expires_at, now)
