"""WhatsApp numbers: registration with encrypted credentials, listing, lookup.

Access tokens and app secrets are encrypted with :class:`SecretBox`; the
webhook verify token is kept only as a SHA-256 hash. None of them is ever
returned, logged or put in an event.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.crypto import SecretBox
from pytake_common.errors import Conflict, InvalidInput, NotFound
from pytake_common.events import CloudEvent
from pytake_common.outbox import add_event
from pytake_whatsapp_gateway.events import NumberRegistered
from pytake_whatsapp_gateway.tables import numbers

SERVICE = "whatsapp-gateway"
CONNECTED = "connected"
DISCONNECTED = "disconnected"

#: The columns an API answer may show (never the encrypted secrets or the token hash).
PUBLIC_COLUMNS = (
    numbers.c.id,
    numbers.c.organization_id,
    numbers.c.phone_number_id,
    numbers.c.waba_id,
    numbers.c.display_phone_number,
    numbers.c.status,
    (numbers.c.app_secret_enc.is_(None)).label("uses_platform_app_secret"),
    numbers.c.created_at,
    numbers.c.updated_at,
)


class NumberAlreadyConnected(Conflict):
    code = "number_already_connected"
    title = "WhatsApp number already connected"


def verify_token_hash(verify_token: str) -> str:
    return hashlib.sha256(verify_token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Registration:
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    access_token: str
    app_secret: str | None
    verify_token: str


async def register_number(
    session: AsyncSession, box: SecretBox, organization_id: uuid.UUID, reg: Registration
) -> Row[Any]:
    """Store the number (secrets encrypted) and stage ``number.registered``."""
    number_id = uuid.uuid4()
    inserted = (
        await session.execute(
            pg_insert(numbers)
            .values(
                id=number_id,
                organization_id=organization_id,
                phone_number_id=reg.phone_number_id,
                waba_id=reg.waba_id,
                display_phone_number=reg.display_phone_number,
                access_token_enc=box.encrypt(reg.access_token),
                app_secret_enc=box.encrypt(reg.app_secret) if reg.app_secret else None,
                verify_token_hash=verify_token_hash(reg.verify_token),
            )
            # phone_number_id is unique platform-wide: a number connects to one tenant.
            .on_conflict_do_nothing(index_elements=[numbers.c.phone_number_id])
            .returning(numbers.c.id)
        )
    ).first()
    if inserted is None:
        raise NumberAlreadyConnected(
            f"the WhatsApp number {reg.phone_number_id} is already connected"
        )
    payload = NumberRegistered(
        number_id=number_id,
        organization_id=organization_id,
        phone_number_id=reg.phone_number_id,
        waba_id=reg.waba_id,
        display_phone_number=reg.display_phone_number,
    )
    await add_event(
        session,
        CloudEvent.of(payload, service=SERVICE, subject=number_id, tenant_id=organization_id),
    )
    return await get_number(session, organization_id, number_id)


async def get_number(
    session: AsyncSession, organization_id: uuid.UUID, number_id: uuid.UUID
) -> Row[Any]:
    row = (
        await session.execute(
            select(*PUBLIC_COLUMNS).where(
                numbers.c.organization_id == organization_id, numbers.c.id == number_id
            )
        )
    ).first()
    if row is None:
        raise NotFound("WhatsApp number not found")
    return row


async def list_numbers(
    session: AsyncSession, organization_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Row[Any]], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(*PUBLIC_COLUMNS).where(numbers.c.organization_id == organization_id)
    if cursor:
        created_at, last_id = decode_cursor(cursor)
        query = query.where(tuple_(numbers.c.created_at, numbers.c.id) < (created_at, last_id))
    rows = list(
        (
            await session.execute(
                query.order_by(numbers.c.created_at.desc(), numbers.c.id.desc()).limit(limit + 1)
            )
        ).all()
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1].created_at, rows[-1].id)


async def mark_disconnected(
    session: AsyncSession, organization_id: uuid.UUID, number_id: uuid.UUID
) -> None:
    await session.execute(
        update(numbers)
        .where(numbers.c.organization_id == organization_id, numbers.c.id == number_id)
        .values(status=DISCONNECTED, updated_at=func.now())
    )


def encode_cursor(created_at: datetime, last_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(last_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, last_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(last_id)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise InvalidInput("cursor is not valid") from exc
