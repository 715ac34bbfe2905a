"""Mark a customer's message as read on WhatsApp, once per message.

The mark (``read_marks``) is taken in the consumer's transaction together
with the call: a transient failure raises, the transaction rolls back and the
consumer retries; a terminal one is logged and the mark kept (Meta would
refuse it again).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.crypto import SecretDecryptionError
from pytake_whatsapp_gateway.numbers import ACTIVE, CONNECTED, mark_disconnected
from pytake_whatsapp_gateway.sending.sender import Sender
from pytake_whatsapp_gateway.tables import numbers, read_marks

log = logging.getLogger(__name__)


class TransientReadError(Exception):
    """Meta could not take the mark now: let the consumer retry."""


@dataclass(frozen=True, slots=True)
class ReadRequest:
    organization_id: uuid.UUID
    number_id: uuid.UUID
    wamid: str


async def mark_read(session: AsyncSession, sender: Sender, req: ReadRequest) -> None:
    number = (
        await session.execute(
            select(numbers.c.phone_number_id, numbers.c.access_token_enc, numbers.c.status).where(
                numbers.c.organization_id == req.organization_id,
                numbers.c.id == req.number_id,
                ACTIVE,
            )
        )
    ).first()
    if number is None or number.status != CONNECTED:
        log.info("mark-as-read skipped: number unknown or disconnected")
        return
    taken = (
        await session.execute(
            pg_insert(read_marks)
            .values(
                phone_number_id=number.phone_number_id,
                wamid=req.wamid[:200],
                organization_id=req.organization_id,
                number_id=req.number_id,
            )
            .on_conflict_do_nothing()
            .returning(read_marks.c.wamid)
        )
    ).first()
    if taken is None:
        return  # marked already
    try:
        token = sender.box.decrypt(number.access_token_enc)
    except SecretDecryptionError:
        log.error("access token of a number cannot be decrypted")
        return
    answer = await sender.graph.mark_read(number.phone_number_id, token, req.wamid)
    error = answer.error
    if error is None:
        return
    if error.transient:
        raise TransientReadError(error.detail)
    if error.disconnects:
        await mark_disconnected(
            session, req.organization_id, req.number_id, error.title or error.detail
        )
    log.warning("mark-as-read refused", extra={"error_code": error.code})
