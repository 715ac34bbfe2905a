"""API clients of an organization: machine credentials for the client-credentials grant.

A client has a role (never ``super_admin``), optional narrower scopes
(:mod:`pytake_common.scopes`), an optional expiry and one secret at a time. The secret is
``pytake_cs_`` + 32 random bytes (base64url), shown once and stored as its sha256: with
256 bits of entropy nothing can be guessed from the hash, so a slow hash (argon2, ~9 ms of
CPU) would only cut the token endpoint's throughput, and a keyed one would tie every
stored hash to ``PYTAKE_SECRET_KEY`` (refresh tokens are stored the same way).

Each secret has a generation id, the ``sid`` of the tokens it obtains. Rotating the
secret or deleting the client revokes that generation like a session
(``session.revoked``, reasons ``api_client_secret_rotated`` / ``api_client_deleted``):
every gateway and service replica refuses its tokens within about a second.

Nothing here commits: the routes own the transactions.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import ColumnElement, and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_auth.events import SessionRevoked
from pytake_auth.tables import api_clients
from pytake_common.outbox import emit
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset

SECRET_PREFIX = "pytake_cs_"
SECRET_BYTES = 32
#: ``last_used_at`` is written at most this often per client (a token request is hot).
LAST_USED_RESOLUTION = text("interval '1 minute'")

RevocationReason = Literal["api_client_secret_rotated", "api_client_deleted"]


@dataclass(frozen=True, slots=True)
class ApiClient:
    id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    role: str
    scopes: list[str] | None
    expires_at: datetime | None
    created_by: uuid.UUID
    created_at: datetime
    secret_rotated_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class Credentials:
    """What the token endpoint needs of a client (found across tenants by its id)."""

    id: uuid.UUID
    organization_id: uuid.UUID
    role: str
    scopes: list[str] | None
    secret_hash: str
    secret_id: uuid.UUID
    expires_at: datetime | None
    deleted: bool


_CLIENT = (
    api_clients.c.id,
    api_clients.c.organization_id,
    api_clients.c.name,
    api_clients.c.role,
    api_clients.c.scopes,
    api_clients.c.expires_at,
    api_clients.c.created_by,
    api_clients.c.created_at,
    api_clients.c.secret_rotated_at,
    api_clients.c.last_used_at,
)


def new_secret() -> tuple[str, str]:
    """A fresh secret and the hash stored in its place."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
    return secret, hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def _live(organization_id: uuid.UUID, client_id: uuid.UUID) -> list[ColumnElement[bool]]:
    return [
        api_clients.c.organization_id == organization_id,
        api_clients.c.id == client_id,
        api_clients.c.deleted_at.is_(None),
    ]


async def insert(
    session: AsyncSession,
    *,
    client_id: uuid.UUID,
    organization_id: uuid.UUID,
    name: str,
    role: str,
    scopes: list[str] | None,
    expires_at: datetime | None,
    created_by: uuid.UUID,
    secret_hash: str,
) -> ApiClient:
    row = (
        await session.execute(
            api_clients.insert()
            .values(
                id=client_id,
                organization_id=organization_id,
                name=name,
                role=role,
                scopes=scopes,
                expires_at=expires_at,
                created_by=created_by,
                secret_hash=secret_hash,
                secret_id=uuid.uuid4(),
            )
            .returning(*_CLIENT)
        )
    ).one()
    return ApiClient(**row._mapping)


async def get(
    session: AsyncSession, organization_id: uuid.UUID, client_id: uuid.UUID
) -> ApiClient | None:
    row = (
        await session.execute(select(*_CLIENT).where(*_live(organization_id, client_id)))
    ).first()
    return ApiClient(**row._mapping) if row is not None else None


#: The api-clients list's cursor: (created_at, id) of the last client on the page.
CLIENTS = keyset("api-clients", TIMESTAMP, ROW_ID)


async def page(
    session: AsyncSession, organization_id: uuid.UUID, cursor: str | None, limit: int
) -> tuple[list[ApiClient], str | None]:
    """The organization's clients, oldest first."""
    query = select(*_CLIENT).where(
        api_clients.c.organization_id == organization_id, api_clients.c.deleted_at.is_(None)
    )
    if cursor:
        at, last = CLIENTS.decode(cursor)
        query = query.where(
            or_(
                api_clients.c.created_at > at,
                and_(api_clients.c.created_at == at, api_clients.c.id > last),
            )
        )
    rows = (
        await session.execute(
            query.order_by(api_clients.c.created_at, api_clients.c.id).limit(limit + 1)
        )
    ).all()
    items = [ApiClient(**r._mapping) for r in rows[:limit]]
    following = CLIENTS.encode((items[-1].created_at, items[-1].id)) if len(rows) > limit else None
    return items, following


async def credentials(session: AsyncSession, client_id: uuid.UUID) -> Credentials | None:
    """The client's credentials, deleted or not (run with ``bypass_rls``: the tenant is
    unknown until the client is found)."""
    c = api_clients.c
    row = (
        await session.execute(
            select(
                c.id,
                c.organization_id,
                c.role,
                c.scopes,
                c.secret_hash,
                c.secret_id,
                c.expires_at,
                c.deleted_at.is_not(None),
            ).where(c.id == client_id)
        )
    ).first()
    return Credentials(*row) if row is not None else None


async def rotate_secret(
    session: AsyncSession, organization_id: uuid.UUID, client_id: uuid.UUID
) -> tuple[ApiClient, str] | None:
    """A new secret (returned once) and generation; the old generation's tokens die."""
    secret, secret_hash = new_secret()
    old = await _end_generation(
        session,
        organization_id,
        client_id,
        "api_client_secret_rotated",
        secret_hash=secret_hash,
        secret_id=uuid.uuid4(),
        secret_rotated_at=func.now(),
    )
    if old is None:
        return None
    client = await get(session, organization_id, client_id)
    assert client is not None  # locked by the update above
    return client, secret


async def delete(session: AsyncSession, organization_id: uuid.UUID, client_id: uuid.UUID) -> bool:
    """Soft-delete (the id stays known to messages and the audit log); its tokens die."""
    old = await _end_generation(
        session,
        organization_id,
        client_id,
        "api_client_deleted",
        deleted_at=func.now(),
        secret_hash="!deleted",
    )
    return old is not None


async def _end_generation(
    session: AsyncSession,
    organization_id: uuid.UUID,
    client_id: uuid.UUID,
    reason: RevocationReason,
    **values: object,
) -> uuid.UUID | None:
    """Update a live client and revoke the secret generation it had (None: no such client)."""
    row = (
        await session.execute(
            select(api_clients.c.secret_id)
            .where(*_live(organization_id, client_id))
            .with_for_update()
        )
    ).first()
    if row is None:
        return None
    await session.execute(
        update(api_clients).where(*_live(organization_id, client_id)).values(**values)
    )
    payload = SessionRevoked(
        session_id=row.secret_id,
        user_id=client_id,
        organization_id=organization_id,
        reason=reason,
    )
    await emit(session, payload, client_id, organization_id)
    secret_id: uuid.UUID = row.secret_id
    return secret_id


async def touch(session: AsyncSession, organization_id: uuid.UUID, client_id: uuid.UUID) -> None:
    """Record a use, unless one was recorded within the last minute (no write then)."""
    c = api_clients.c
    await session.execute(
        update(api_clients)
        .where(
            c.organization_id == organization_id,
            c.id == client_id,
            or_(c.last_used_at.is_(None), c.last_used_at < func.now() - LAST_USED_RESOLUTION),
        )
        .values(last_used_at=func.now())
    )
