"""WABA-level webhook changes: template status/category, number quality, account.

These changes name a WhatsApp Business account (``entry.id``), not a number:
they apply to the numbers registered with that ``waba_id``, tenant by tenant.
Each change is applied once per tenant (``waba_updates`` keyed by its content
and ``entry.time``), in the intake's transaction.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.ids import PYTAKE_NAMESPACE
from pytake_whatsapp_gateway.numbers import PUBLIC_COLUMNS, emit_updated
from pytake_whatsapp_gateway.tables import numbers, waba_updates
from pytake_whatsapp_gateway.templates.store import TemplateFacts, record_template_change
from pytake_whatsapp_gateway.webhooks.parsing import WabaChange
from pytake_whatsapp_gateway.webhooks.signature import KnownNumber

log = logging.getLogger(__name__)

#: Quality events that say the rating itself (the explicit field wins when present).
QUALITY_OF_EVENT = {"FLAGGED": "RED", "UNFLAGGED": "GREEN"}


async def record_waba_change(
    session: AsyncSession,
    change: WabaChange,
    organization_id: uuid.UUID,
    of_waba: list[KnownNumber],
    delivery_id: uuid.UUID,
) -> int:
    """Apply ``change`` to this tenant's numbers of the WABA; 1 if new, 0 if seen already."""
    canonical = json.dumps(change.value, sort_keys=True, separators=(",", ":"))
    key = f"waba:{organization_id}:{change.waba_id}:{change.field}:{change.time}:{canonical}"
    inserted = (
        await session.execute(
            pg_insert(waba_updates)
            .values(
                id=uuid.uuid5(PYTAKE_NAMESPACE, key),
                organization_id=organization_id,
                waba_id=change.waba_id,
                field=change.field,
                delivery_id=delivery_id,
            )
            .on_conflict_do_nothing()
            .returning(waba_updates.c.id)
        )
    ).first()
    if inserted is None:
        return 0
    if change.field in ("message_template_status_update", "template_category_update"):
        facts = _template_facts(change)
        if facts is None:
            log.warning("template change without name or language ignored")
            return 1
        only = of_waba[0].id if len(of_waba) == 1 else None
        await record_template_change(session, organization_id, only, facts)
    else:
        await _number_change(session, change, organization_id, of_waba)
    return 1


def _template_facts(change: WabaChange) -> TemplateFacts | None:
    value = change.value
    name = _s(value.get("message_template_name"))
    language = _s(value.get("message_template_language"))
    if name is None or language is None:
        return None
    meta_id = _s(value.get("message_template_id"))
    if change.field == "template_category_update":
        return TemplateFacts(
            waba_id=change.waba_id,
            name=name,
            language=language,
            meta_template_id=meta_id,
            status=None,
            category=_s(value.get("new_category")),
            reason=None,
        )
    reason = _s(value.get("reason"))
    return TemplateFacts(
        waba_id=change.waba_id,
        name=name,
        language=language,
        meta_template_id=meta_id,
        status=_s(value.get("event")),
        category=_s(value.get("message_template_category")),
        reason=None if reason in (None, "NONE") else reason,
    )


async def _number_change(
    session: AsyncSession,
    change: WabaChange,
    organization_id: uuid.UUID,
    of_waba: list[KnownNumber],
) -> None:
    value = change.value
    event = _s(value.get("event"))
    values: dict[str, Any] = {}
    quality = _s(value.get("quality_rating")) or _s(value.get("current_quality_rating"))
    if quality is None and change.field == "phone_number_quality_update" and event:
        quality = QUALITY_OF_EVENT.get(event.upper())
    if quality is not None:
        values["quality_rating"] = quality.upper()[:20]
    tier = _s(value.get("current_limit")) or _s(value.get("messaging_limit_tier"))
    if tier is not None:
        values["messaging_limit_tier"] = tier.upper()[:40]
    targets = _targets(value, of_waba)
    log.info(
        "WABA change received",
        extra={"field": change.field, "event": event, "numbers": len(targets)},
    )
    if not values:
        return
    for number in targets:
        current = (
            await session.execute(
                select(numbers.c.quality_rating, numbers.c.messaging_limit_tier).where(
                    numbers.c.organization_id == organization_id, numbers.c.id == number.id
                )
            )
        ).one()
        changed = [k for k, v in values.items() if current._mapping[k] != v]
        if not changed:
            continue
        await session.execute(
            update(numbers)
            .where(numbers.c.organization_id == organization_id, numbers.c.id == number.id)
            .values(**values, updated_at=func.now())
        )
        row = (
            await session.execute(select(*PUBLIC_COLUMNS).where(numbers.c.id == number.id))
        ).one()
        await emit_updated(session, row, changed)


def _targets(value: dict[str, Any], of_waba: list[KnownNumber]) -> list[KnownNumber]:
    """The numbers a change names by phone (digits compared), else all of the WABA's."""
    named = _s(value.get("display_phone_number")) or _s(value.get("phone_number"))
    if named is None:
        return of_waba
    digits = _digits(named)
    matching = [n for n in of_waba if _digits(n.display_phone_number) == digits]
    if matching:
        return matching
    return of_waba if len(of_waba) == 1 else []


def _digits(raw: str) -> str:
    return re.sub(r"\D", "", raw)


def _s(raw: Any) -> str | None:
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return str(raw)
    return raw.strip() or None if isinstance(raw, str) else None
