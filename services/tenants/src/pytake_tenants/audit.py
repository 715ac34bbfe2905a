"""The operator's audit trail: who did what to which organization, before and after."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.context import request_id_var
from pytake_common.security import Principal
from pytake_tenants.tables import audit_log


class AuditEntry(BaseModel):
    id: int
    actor_id: uuid.UUID
    actor_organization_id: uuid.UUID
    action: str
    organization_id: uuid.UUID
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    reason: str | None
    request_id: str | None
    created_at: datetime


async def record(
    session: AsyncSession,
    actor: Principal,
    action: str,
    organization_id: uuid.UUID,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    reason: str | None = None,
) -> None:
    await session.execute(
        insert(audit_log).values(
            actor_id=actor.user_id,
            actor_organization_id=actor.organization_id,
            action=action,
            organization_id=organization_id,
            before=before,
            after=after,
            reason=reason,
            request_id=request_id_var.get(),
        )
    )


async def list_entries(
    session: AsyncSession,
    *,
    organization_id: uuid.UUID | None,
    action: str | None,
    before_id: int | None,
    limit: int,
) -> tuple[list[AuditEntry], bool]:
    """Newest first."""
    stmt = select(audit_log)
    if organization_id is not None:
        stmt = stmt.where(audit_log.c.organization_id == organization_id)
    if action is not None:
        stmt = stmt.where(audit_log.c.action == action)
    if before_id is not None:
        stmt = stmt.where(audit_log.c.id < before_id)
    rows = (
        (await session.execute(stmt.order_by(audit_log.c.id.desc()).limit(limit + 1)))
        .mappings()
        .all()
    )
    return [AuditEntry.model_validate(dict(r)) for r in rows[:limit]], len(rows) > limit
