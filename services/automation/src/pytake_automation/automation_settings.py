"""Per-organization automation settings (``/v1/automation/settings``).

Where each knob lives: what the organization *is* (time zone, weekly hours, holidays, the
welcome and away texts, ``auto_close_after_hours``) stays in tenants' organization settings,
which every service reads from tenants' events; what only automation uses lives here: how
often the away message may repeat in one conversation, the optional closing message of an
auto-resolve, and the loop-protection cap on automatic actions.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.tables import settings as settings_table


class AutomationSettings(BaseModel):
    model_config = ConfigDict(extra="ignore")

    #: the away message is sent at most once per conversation in this many minutes
    away_message_interval_minutes: int = Field(default=720, ge=1, le=7 * 24 * 60)
    #: sent before an idle conversation is auto-resolved (only inside the 24-hour window)
    auto_resolve_message: str | None = Field(default=None, max_length=1024)
    #: automatic actions per conversation per minute; null: the service's default
    actions_per_conversation_per_minute: int | None = Field(default=None, ge=1, le=1000)


class AutomationSettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    away_message_interval_minutes: int | None = Field(default=None, ge=1, le=7 * 24 * 60)
    auto_resolve_message: str | None = Field(default=None, max_length=1024)
    actions_per_conversation_per_minute: int | None = Field(default=None, ge=1, le=1000)


def of(document: dict[str, Any] | None) -> AutomationSettings:
    return AutomationSettings.model_validate(document or {})


async def load(session: AsyncSession, org: uuid.UUID) -> AutomationSettings:
    document = await session.scalar(
        select(settings_table.c.settings).where(settings_table.c.organization_id == org)
    )
    return of(document)


async def patch(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, body: AutomationSettingsPatch
) -> AutomationSettings:
    current = await load(session, org)
    merged = AutomationSettings.model_validate(
        current.model_dump() | body.model_dump(exclude_unset=True)
    )
    if merged.auto_resolve_message is not None and not merged.auto_resolve_message.strip():
        merged.auto_resolve_message = None
    stmt = pg_insert(settings_table).values(
        organization_id=org, settings=merged.model_dump(mode="json"), updated_by=user
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[settings_table.c.organization_id],
            set_={"settings": stmt.excluded.settings, "updated_by": user, "updated_at": func.now()},
        )
    )
    return merged
