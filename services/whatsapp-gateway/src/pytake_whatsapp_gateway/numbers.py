"""WhatsApp numbers: registration with encrypted credentials, changes, removal, lookup.

Access tokens and app secrets are encrypted with :class:`SecretBox`; the
webhook verify token is kept only as a SHA-256 hash. None of them is ever
returned, logged or put in an event.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Row, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.crypto import SecretBox
from pytake_common.errors import Conflict, NotFound
from pytake_common.outbox import emit
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_whatsapp_gateway.events import (
    NumberDisconnected,
    NumberRegistered,
    NumberRemoved,
    NumberUpdated,
)
from pytake_whatsapp_gateway.tables import numbers

CONNECTED = "connected"
DISCONNECTED = "disconnected"
REMOVED = "removed"
DEFAULT_THROUGHPUT = 80
ACTIVE = numbers.c.removed_at.is_(None)

#: The columns an API answer may show (never the encrypted secrets or the token hash).
PUBLIC_COLUMNS = (
    numbers.c.id,
    numbers.c.organization_id,
    numbers.c.phone_number_id,
    numbers.c.waba_id,
    numbers.c.display_phone_number,
    numbers.c.status,
    numbers.c.quality_rating,
    numbers.c.messaging_limit_tier,
    numbers.c.throughput_per_second,
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
    throughput_per_second: int = DEFAULT_THROUGHPUT
    #: Meta's messaging limit when it said (``tiers.read_tier``)
    messaging_limit_tier: str | None = None


@dataclass(frozen=True, slots=True)
class NumberChanges:
    """A PATCH: None leaves a field as it is."""

    display_phone_number: str | None = None
    access_token: str | None = None
    app_secret: str | None = None
    verify_token: str | None = None
    throughput_per_second: int | None = None


async def count_active(session: AsyncSession, organization_id: uuid.UUID) -> int:
    return int(
        await session.scalar(
            select(func.count())
            .select_from(numbers)
            .where(numbers.c.organization_id == organization_id, ACTIVE)
        )
        or 0
    )


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
                throughput_per_second=reg.throughput_per_second,
                messaging_limit_tier=reg.messaging_limit_tier,
            )
            # phone_number_id is unique platform-wide: a number connects to one tenant.
            .on_conflict_do_nothing(index_elements=[numbers.c.phone_number_id], index_where=ACTIVE)
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
        messaging_limit_tier=reg.messaging_limit_tier,
        throughput_per_second=reg.throughput_per_second,
    )
    await emit(session, payload, number_id)
    return await get_number(session, organization_id, number_id)


async def get_number(
    session: AsyncSession, organization_id: uuid.UUID, number_id: uuid.UUID
) -> Row[Any]:
    row = (
        await session.execute(
            select(*PUBLIC_COLUMNS).where(
                numbers.c.organization_id == organization_id, numbers.c.id == number_id, ACTIVE
            )
        )
    ).first()
    if row is None:
        raise NotFound("WhatsApp number not found")
    return row


#: the connected numbers, newest first by (created_at, id)
NUMBERS = keyset("numbers", TIMESTAMP, ROW_ID)


async def list_numbers(
    session: AsyncSession, organization_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Row[Any]], str | None]:
    """Newest first, keyset-paginated on (created_at, id)."""
    query = select(*PUBLIC_COLUMNS).where(numbers.c.organization_id == organization_id, ACTIVE)
    if cursor:
        created_at, last_id = NUMBERS.decode(cursor)
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
    return rows, NUMBERS.encode((rows[-1].created_at, rows[-1].id))


async def update_number(
    session: AsyncSession,
    box: SecretBox,
    organization_id: uuid.UUID,
    number_id: uuid.UUID,
    changes: NumberChanges,
) -> Row[Any]:
    """Apply a PATCH; a new access token reconnects a disconnected number."""
    current = await get_number(session, organization_id, number_id)
    values: dict[str, Any] = {}
    changed: list[str] = []
    if (
        changes.display_phone_number is not None
        and changes.display_phone_number != current.display_phone_number
    ):
        values["display_phone_number"] = changes.display_phone_number
        changed.append("display_phone_number")
    if changes.access_token is not None:
        values["access_token_enc"] = box.encrypt(changes.access_token)
        changed.append("access_token")
        if current.status == DISCONNECTED:
            values["status"] = CONNECTED
            changed.append("status")
    if changes.app_secret is not None:
        values["app_secret_enc"] = box.encrypt(changes.app_secret)
        changed.append("app_secret")
    if changes.verify_token is not None:
        values["verify_token_hash"] = verify_token_hash(changes.verify_token)
        changed.append("verify_token")
    if (
        changes.throughput_per_second is not None
        and changes.throughput_per_second != current.throughput_per_second
    ):
        values["throughput_per_second"] = changes.throughput_per_second
        changed.append("throughput_per_second")
    if not changed:
        return current
    await session.execute(
        update(numbers)
        .where(numbers.c.organization_id == organization_id, numbers.c.id == number_id)
        .values(**values, updated_at=func.now())
    )
    row = await get_number(session, organization_id, number_id)
    await emit_updated(session, row, changed)
    return row


async def emit_updated(session: AsyncSession, row: Row[Any], changed: list[str]) -> None:
    payload = NumberUpdated(
        number_id=row.id,
        organization_id=row.organization_id,
        display_phone_number=row.display_phone_number,
        status=row.status,
        quality_rating=row.quality_rating,
        messaging_limit_tier=row.messaging_limit_tier,
        changed=changed,
        throughput_per_second=row.throughput_per_second,
    )
    await emit(session, payload, row.id)


async def _change_if(
    session: AsyncSession,
    organization_id: uuid.UUID,
    number_id: uuid.UUID,
    condition: ColumnElement[bool],
    **values: Any,
) -> bool:
    """Update the number while ``condition`` holds; whether it did (it changed)."""
    changed = (
        await session.execute(
            update(numbers)
            .where(numbers.c.organization_id == organization_id, numbers.c.id == number_id)
            .where(condition)
            .values(**values, updated_at=func.now())
            .returning(numbers.c.id)
        )
    ).first()
    return changed is not None


async def refresh_tier(
    session: AsyncSession, organization_id: uuid.UUID, number_id: uuid.UUID, tier: str
) -> bool:
    """Store the tier Meta answered (a sync); ``number.updated`` when it changed."""
    differs = numbers.c.messaging_limit_tier.is_distinct_from(tier)
    if not await _change_if(
        session, organization_id, number_id, differs, messaging_limit_tier=tier
    ):
        return False
    await emit_updated(
        session, await get_number(session, organization_id, number_id), ["messaging_limit_tier"]
    )
    return True


async def remove_number(
    session: AsyncSession, organization_id: uuid.UUID, number_id: uuid.UUID
) -> None:
    """Soft removal: the row stays (history, statuses), webhooks and sends ignore it."""
    row = await get_number(session, organization_id, number_id)
    await session.execute(
        update(numbers)
        .where(numbers.c.organization_id == organization_id, numbers.c.id == number_id)
        .values(status=REMOVED, removed_at=func.now(), updated_at=func.now())
    )
    payload = NumberRemoved(
        number_id=number_id, organization_id=organization_id, phone_number_id=row.phone_number_id
    )
    await emit(session, payload, number_id)


async def mark_disconnected(
    session: AsyncSession, organization_id: uuid.UUID, number_id: uuid.UUID, reason: str
) -> None:
    """Meta refused the access token: stop sending until a new one is set (once per change)."""
    connected = numbers.c.status == CONNECTED
    if not await _change_if(session, organization_id, number_id, connected, status=DISCONNECTED):
        return
    payload = NumberDisconnected(
        number_id=number_id, organization_id=organization_id, reason=reason
    )
    await emit(session, payload, number_id)


async def rotate_secrets(session: AsyncSession, box: SecretBox) -> int:
    """Re-encrypt every stored secret with the first configured key; return rows changed."""
    rows = (
        await session.execute(
            select(numbers.c.id, numbers.c.access_token_enc, numbers.c.app_secret_enc)
        )
    ).all()
    for row in rows:
        await session.execute(
            update(numbers)
            .where(numbers.c.id == row.id)
            .values(
                access_token_enc=box.rotate(row.access_token_enc),
                app_secret_enc=box.rotate(row.app_secret_enc) if row.app_secret_enc else None,
            )
        )
    return len(rows)
