"""The local copy of a WABA's templates (one row per organization, WABA, name, language)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.ids import PYTAKE_NAMESPACE
from pytake_common.outbox import emit
from pytake_whatsapp_gateway.events import TemplateStatusChanged, TemplateSynced
from pytake_whatsapp_gateway.tables import templates

APPROVED = "APPROVED"


@dataclass(frozen=True, slots=True)
class TemplateFacts:
    """What Meta said about a template; None leaves a stored value unchanged."""

    waba_id: str
    name: str
    language: str
    meta_template_id: str | None
    status: str | None
    category: str | None
    reason: str | None = None
    components: list[dict[str, Any]] | None = field(default=None)


def template_id(organization_id: uuid.UUID, waba_id: str, name: str, language: str) -> uuid.UUID:
    return uuid.uuid5(PYTAKE_NAMESPACE, f"template:{organization_id}:{waba_id}:{name}:{language}")


async def upsert_template(
    session: AsyncSession, organization_id: uuid.UUID, facts: TemplateFacts
) -> tuple[Row[Any], Row[Any] | None]:
    """Store ``facts``; return the row after and before (None when it is new)."""
    tid = template_id(organization_id, facts.waba_id, facts.name, facts.language)
    before = (
        await session.execute(
            select(templates).where(
                templates.c.organization_id == organization_id, templates.c.id == tid
            )
        )
    ).first()
    values: dict[str, Any] = {
        "id": tid,
        "organization_id": organization_id,
        "waba_id": facts.waba_id,
        "name": facts.name,
        "language": facts.language,
        "status": (facts.status or "PENDING").upper()[:40],
        "category": facts.category.upper()[:40] if facts.category else None,
        "meta_template_id": facts.meta_template_id,
        "components": facts.components or [],
        "rejected_reason": facts.reason[:200] if facts.reason else None,
    }
    changes: dict[str, Any] = {"updated_at": func.now()}
    for column in ("status", "category", "meta_template_id", "components"):
        if getattr(facts, column) is not None:
            changes[column] = values[column]
    if facts.status is not None:
        changes["rejected_reason"] = values["rejected_reason"]
    await session.execute(
        pg_insert(templates)
        .values(**values)
        .on_conflict_do_update(index_elements=[templates.c.id], set_=changes)
    )
    after = (
        await session.execute(
            select(templates).where(
                templates.c.organization_id == organization_id, templates.c.id == tid
            )
        )
    ).one()
    return after, before


async def record_template_change(
    session: AsyncSession,
    organization_id: uuid.UUID,
    number_id: uuid.UUID | None,
    facts: TemplateFacts,
) -> None:
    """A status/category webhook: update the copy, emit ``template.status_changed``."""
    after, _ = await upsert_template(session, organization_id, facts)
    await emit_template(session, TemplateStatusChanged, after, number_id)


async def emit_template(
    session: AsyncSession,
    kind: type[TemplateStatusChanged] | type[TemplateSynced],
    row: Row[Any],
    number_id: uuid.UUID | None,
) -> None:
    payload = kind(
        template_id=row.id,
        organization_id=row.organization_id,
        number_id=number_id,
        waba_id=row.waba_id,
        name=row.name,
        language=row.language,
        category=row.category,
        status=row.status,
        components=list(row.components),
    )
    await emit(session, payload, row.id)
