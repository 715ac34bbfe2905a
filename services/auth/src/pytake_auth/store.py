"""Reads and writes of users and sessions, in the caller's transaction.

Nothing here commits: route handlers open the transactions (bound to the
organization, or ``bypass_rls`` for the two look-ups that must find the
tenant first) and these functions run inside them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_auth.config import Settings
from pytake_auth.events import SessionRevoked
from pytake_auth.tables import refresh_tokens, sessions, users
from pytake_auth.tokens import new_refresh_token
from pytake_common.outbox import emit

RevocationReason = Literal["logout", "refresh_token_reuse", "password_changed"]


@dataclass(frozen=True, slots=True)
class User:
    id: uuid.UUID
    organization_id: uuid.UUID
    email: str
    full_name: str
    role: str
    is_active: bool
    password_hash: str


_USER_COLUMNS = (
    users.c.id,
    users.c.organization_id,
    users.c.email,
    users.c.full_name,
    users.c.role,
    users.c.is_active,
    users.c.password_hash,
)


async def _now(session: AsyncSession) -> datetime:
    """The transaction's timestamp (the clock every other column of the row uses)."""
    now: datetime = (await session.execute(select(func.now()))).scalar_one()
    return now


async def insert_user(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    organization_id: uuid.UUID,
    email: str,
    password_hash: str,
    full_name: str,
    role: str,
) -> bool:
    """Insert a user; False when the e-mail is already registered (in any organization)."""
    inserted = await session.execute(
        pg_insert(users)
        .values(
            id=user_id,
            organization_id=organization_id,
            email=email,
            password_hash=password_hash,
            full_name=full_name,
            role=role,
        )
        .on_conflict_do_nothing(index_elements=[users.c.email])
        .returning(users.c.id)
    )
    return inserted.first() is not None


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The one cross-tenant read of login (run it under ``bypass_rls``)."""
    row = (await session.execute(select(*_USER_COLUMNS).where(users.c.email == email))).first()
    return User(*row) if row is not None else None


async def get_user(
    session: AsyncSession,
    organization_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    for_update: bool = False,
) -> User | None:
    query = select(*_USER_COLUMNS).where(
        users.c.organization_id == organization_id, users.c.id == user_id
    )
    if for_update:
        query = query.with_for_update()
    row = (await session.execute(query)).first()
    return User(*row) if row is not None else None


async def open_session(
    session: AsyncSession, settings: Settings, user: User, now: datetime | None = None
) -> tuple[uuid.UUID, str]:
    """Start a session for ``user``; return its id and its first refresh token.
    ``now``: the transaction's clock when the caller has read it already."""
    now = now or await _now(session)
    session_id = uuid.uuid4()
    expires_at = now + timedelta(seconds=settings.session_max_age_s)
    await session.execute(
        insert(sessions).values(
            id=session_id,
            organization_id=user.organization_id,
            user_id=user.id,
            expires_at=expires_at,
        )
    )
    token = await issue_refresh_token(
        session, settings, user, session_id, expires_at, now, rotated_from=None
    )
    return session_id, token


async def issue_refresh_token(
    session: AsyncSession,
    settings: Settings,
    user: User,
    session_id: uuid.UUID,
    session_expires_at: datetime,
    now: datetime,
    *,
    rotated_from: uuid.UUID | None = None,
) -> str:
    token, token_hash = new_refresh_token()
    expires_at = min(now + timedelta(seconds=settings.refresh_token_ttl_s), session_expires_at)
    await session.execute(
        insert(refresh_tokens).values(
            id=uuid.uuid4(),
            organization_id=user.organization_id,
            session_id=session_id,
            user_id=user.id,
            token_hash=token_hash,
            rotated_from=rotated_from,
            expires_at=expires_at,
        )
    )
    return token


async def refresh_token_owner(
    session: AsyncSession, token_hash: str
) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The organization and user a refresh token belongs to (run under ``bypass_rls``:
    the one cross-tenant read of a refresh)."""
    row = (
        await session.execute(
            select(refresh_tokens.c.organization_id, refresh_tokens.c.user_id).where(
                refresh_tokens.c.token_hash == token_hash
            )
        )
    ).first()
    return (row.organization_id, row.user_id) if row is not None else None


@dataclass(frozen=True, slots=True)
class Rotated:
    user: User
    session_id: uuid.UUID
    refresh_token: str


@dataclass(frozen=True, slots=True)
class Rejected:
    reason: Literal["unknown", "revoked", "expired", "inactive_user", "reused"]


async def rotate_refresh_token(
    session: AsyncSession, settings: Settings, organization_id: uuid.UUID, token_hash: str
) -> Rotated | Rejected:
    """Spend a refresh token for a new one in the same session.

    A token that was already spent revokes its whole session (someone holds a
    copy), emitting ``session.revoked``: the caller must commit and then refuse.
    """
    token_id = await session.scalar(
        select(refresh_tokens.c.id).where(
            refresh_tokens.c.organization_id == organization_id,
            refresh_tokens.c.token_hash == token_hash,
        )
    )
    if token_id is None:
        return Rejected("unknown")
    # Lock the session first: concurrent refreshes of one session run one at a time.
    sess = (
        await session.execute(
            select(sessions.c.id, sessions.c.user_id, sessions.c.expires_at, sessions.c.revoked_at)
            .join(refresh_tokens, refresh_tokens.c.session_id == sessions.c.id)
            .where(refresh_tokens.c.id == token_id, sessions.c.organization_id == organization_id)
            .with_for_update(of=sessions)
        )
    ).first()
    token = (
        await session.execute(
            select(
                refresh_tokens.c.expires_at, refresh_tokens.c.used_at, refresh_tokens.c.revoked_at
            )
            .where(refresh_tokens.c.id == token_id)
            .with_for_update()
        )
    ).first()
    if sess is None or token is None:
        return Rejected("unknown")  # purged in between
    if sess.revoked_at is not None:
        return Rejected("revoked")
    if token.used_at is not None or token.revoked_at is not None:
        await revoke_session(
            session, organization_id, sess.id, sess.user_id, reason="refresh_token_reuse"
        )
        return Rejected("reused")
    now = await _now(session)
    if token.expires_at <= now or sess.expires_at <= now:
        return Rejected("expired")
    user = await get_user(session, organization_id, sess.user_id)
    if user is None or not user.is_active:
        return Rejected("inactive_user")
    await session.execute(
        update(refresh_tokens).where(refresh_tokens.c.id == token_id).values(used_at=now)
    )
    await session.execute(update(sessions).where(sessions.c.id == sess.id).values(refreshed_at=now))
    new_token = await issue_refresh_token(
        session, settings, user, sess.id, sess.expires_at, now, rotated_from=token_id
    )
    return Rotated(user, sess.id, new_token)


async def revoke_session(
    session: AsyncSession,
    organization_id: uuid.UUID,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    *,
    reason: RevocationReason,
) -> bool:
    """Revoke a live session and all its refresh tokens, emitting ``session.revoked``.

    False (and no event) when the session is unknown, another user's, or already revoked.
    """
    revoked = (
        await session.execute(
            update(sessions)
            .where(
                sessions.c.organization_id == organization_id,
                sessions.c.id == session_id,
                sessions.c.user_id == user_id,
                sessions.c.revoked_at.is_(None),
            )
            .values(revoked_at=func.now(), revoked_reason=reason)
            .returning(sessions.c.id)
        )
    ).first()
    if revoked is None:
        return False
    await session.execute(
        update(refresh_tokens)
        .where(
            refresh_tokens.c.organization_id == organization_id,
            refresh_tokens.c.session_id == session_id,
            refresh_tokens.c.revoked_at.is_(None),
        )
        .values(revoked_at=func.now())
    )
    payload = SessionRevoked(
        session_id=session_id, user_id=user_id, organization_id=organization_id, reason=reason
    )
    await emit(session, payload, session_id)
    return True


async def session_is_live(
    session: AsyncSession, organization_id: uuid.UUID, session_id: uuid.UUID, user_id: uuid.UUID
) -> bool:
    found = await session.scalar(
        select(sessions.c.id).where(
            sessions.c.organization_id == organization_id,
            sessions.c.id == session_id,
            sessions.c.user_id == user_id,
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > func.now(),
        )
    )
    return found is not None
