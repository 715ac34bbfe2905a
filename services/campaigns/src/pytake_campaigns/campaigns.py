"""Campaigns: create, change while a draft, delete, and move through their lifecycle.

Runs inside the caller's transaction and never commits. Every change emits its event
through the outbox in that transaction.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_campaigns import rules
from pytake_campaigns.events import (
    CampaignCancelled,
    CampaignCreated,
    CampaignDeleted,
    CampaignPaused,
    CampaignResumed,
    CampaignUpdated,
)
from pytake_campaigns.schemas import Campaign, CampaignCreate, CampaignPatch, CampaignTemplate
from pytake_campaigns.tables import (
    campaigns,
    number_replicas,
    recipients,
    tag_replicas,
    template_replicas,
)
from pytake_common.errors import DomainError, InvalidInput, NotFound
from pytake_common.outbox import emit
from pytake_common.tenancy import OrganizationDirectory

#: plan limits (tenants' plans, learnt from its organization events)
CAMPAIGNS_LIMIT = "campaigns"
MONTHLY_RECIPIENTS_LIMIT = "monthly_campaign_recipients"
REMOVED, DISCONNECTED = "removed", "disconnected"


class CampaignNotFound(NotFound):
    title = "Campaign not found"


class NumberNotFound(NotFound):
    title = "WhatsApp number not found"


class NumberDisconnected(DomainError):
    status, code, title = 422, "number_disconnected", "The WhatsApp number is disconnected"


class UnknownTag(InvalidInput):
    code, title = "unknown_tag", "Unknown tag"


def view(row: Any) -> Campaign:
    return Campaign.model_validate(dict(row))


def state(row: Any) -> dict[str, Any]:
    """The fields every campaign event carries."""
    return {
        "campaign_id": row["id"],
        "organization_id": row["organization_id"],
        "name": row["name"],
        "number_id": row["number_id"],
        "template_name": row["template"]["name"],
        "template_language": row["template"]["language"],
        "status": row["status"],
    }


async def load(
    session: AsyncSession, org: uuid.UUID, campaign_id: uuid.UUID, *, lock: bool = False
) -> Any:
    stmt = select(campaigns).where(
        campaigns.c.id == campaign_id, campaigns.c.organization_id == org
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise CampaignNotFound("no such campaign in this organization")
    return row


async def load_number(session: AsyncSession, org: uuid.UUID, number_id: uuid.UUID) -> Any:
    n = number_replicas.c
    row = (
        (
            await session.execute(
                select(number_replicas).where(n.id == number_id, n.organization_id == org)
            )
        )
        .mappings()
        .first()
    )
    if row is None or row["status"] == REMOVED:
        raise NumberNotFound("no such WhatsApp number in this organization")
    return row


async def load_template(
    session: AsyncSession, org: uuid.UUID, number: Any, template: CampaignTemplate
) -> Any:
    """The number's WABA's template with that name and language, newest version first."""
    t = template_replicas.c
    row = (
        (
            await session.execute(
                select(template_replicas)
                .where(
                    t.organization_id == org,
                    t.name == template.name,
                    t.language == template.language,
                    (t.waba_id == number["waba_id"]) | (t.number_id == number["id"]),
                )
                .order_by(t.version_at.desc().nulls_last())
                .limit(1)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise rules.TemplateNotFound(
            f"no template {template.name} ({template.language}) for this number"
        )
    return row


async def check_sendable(
    session: AsyncSession, org: uuid.UUID, number_id: uuid.UUID, template: CampaignTemplate
) -> tuple[Any, Any]:
    """The number (of this organization) and its approved template, parameters mapped."""
    number = await load_number(session, org, number_id)
    found = await load_template(session, org, number, template)
    rules.check_template(found["status"], found["components"] or [], template.spec())
    return number, found


async def check_tags(session: AsyncSession, org: uuid.UUID, tag_ids: set[uuid.UUID]) -> None:
    if not tag_ids:
        return
    t = tag_replicas.c
    known = set(
        (
            await session.scalars(
                select(t.id).where(
                    t.organization_id == org, t.id.in_(tag_ids), t.deleted_at.is_(None)
                )
            )
        ).all()
    )
    missing = sorted(str(i) for i in tag_ids - known)
    if missing:
        raise UnknownTag(f"no such tag in this organization: {', '.join(missing)}", tags=missing)


async def count_active(session: AsyncSession, org: uuid.UUID) -> int:
    """Campaigns not finished, counted under a per-organization lock (the plan limit)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"campaigns:{org}"}
    )
    stmt = (
        select(func.count())
        .select_from(campaigns)
        .where(campaigns.c.organization_id == org, campaigns.c.status.in_(rules.ACTIVE))
    )
    return int(await session.scalar(stmt) or 0)


async def create(
    session: AsyncSession,
    directory: OrganizationDirectory | None,
    org: uuid.UUID,
    user: uuid.UUID | None,
    body: CampaignCreate,
) -> Campaign:
    if directory is not None:
        used = await count_active(session, org)
        await directory.check_limit(org, CAMPAIGNS_LIMIT, used=used)
    await check_sendable(session, org, body.number_id, body.template)
    await check_tags(session, org, body.audience.tag_ids())
    row = (
        (
            await session.execute(
                campaigns.insert()
                .values(
                    id=uuid.uuid4(),
                    organization_id=org,
                    name=body.name,
                    number_id=body.number_id,
                    template=body.template.model_dump(mode="json"),
                    audience=body.audience.model_dump(mode="json"),
                    rate_per_second=body.rate_per_second,
                    created_by=user,
                )
                .returning(*campaigns.c)
            )
        )
        .mappings()
        .one()
    )
    await emit(session, CampaignCreated(**state(row), created_by=user), row["id"])
    return view(row)


async def get(session: AsyncSession, org: uuid.UUID, campaign_id: uuid.UUID) -> Campaign:
    return view(await load(session, org, campaign_id))


async def list_page(
    session: AsyncSession,
    org: uuid.UUID,
    limit: int,
    before: tuple[datetime, uuid.UUID] | None,
    status: str | None,
) -> tuple[list[Campaign], bool]:
    """Newest first."""
    c = campaigns.c
    stmt = select(campaigns).where(c.organization_id == org)
    if status is not None:
        stmt = stmt.where(c.status == status)
    if before is not None:
        stmt = stmt.where(tuple_(c.created_at, c.id) < tuple_(*before))
    stmt = stmt.order_by(c.created_at.desc(), c.id.desc()).limit(limit + 1)
    rows = (await session.execute(stmt)).mappings().all()
    return [view(r) for r in rows[:limit]], len(rows) > limit


async def patch(
    session: AsyncSession,
    org: uuid.UUID,
    user: uuid.UUID | None,
    campaign_id: uuid.UUID,
    body: CampaignPatch,
) -> Campaign:
    current = await load(session, org, campaign_id, lock=True)
    rules.check_action("edit", current["status"])
    values: dict[str, Any] = {}
    for name in ("name", "number_id", "rate_per_second"):
        if name in body.model_fields_set and (
            getattr(body, name) is not None or name == "rate_per_second"
        ):
            values[name] = getattr(body, name)
    if body.template is not None:
        values["template"] = body.template.model_dump(mode="json")
    if body.audience is not None:
        await check_tags(session, org, body.audience.tag_ids())
        values["audience"] = body.audience.model_dump(mode="json")
    if not values:
        return view(current)
    if {"number_id", "template"} & values.keys():
        template = CampaignTemplate.model_validate(values.get("template", current["template"]))
        await check_sendable(session, org, values.get("number_id", current["number_id"]), template)
    row = await update_campaign(session, org, campaign_id, **values)
    await emit(session, CampaignUpdated(**state(row), updated_by=user), campaign_id)
    return view(row)


async def update_campaign(
    session: AsyncSession, org: uuid.UUID, campaign_id: uuid.UUID, **values: Any
) -> Any:
    return (
        (
            await session.execute(
                update(campaigns)
                .where(campaigns.c.id == campaign_id, campaigns.c.organization_id == org)
                .values(**values, updated_at=func.now())
                .returning(*campaigns.c)
            )
        )
        .mappings()
        .one()
    )


async def remove(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, campaign_id: uuid.UUID
) -> None:
    current = await load(session, org, campaign_id, lock=True)
    rules.check_action("delete", current["status"])
    await session.execute(
        campaigns.delete().where(campaigns.c.id == campaign_id, campaigns.c.organization_id == org)
    )
    deleted = CampaignDeleted(campaign_id=campaign_id, organization_id=org, deleted_by=user)
    await emit(session, deleted, campaign_id)


async def pause(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, campaign_id: uuid.UUID
) -> Campaign:
    current = await load(session, org, campaign_id, lock=True)
    rules.check_action("pause", current["status"])
    row = await update_campaign(
        session,
        org,
        campaign_id,
        status=rules.PAUSED,
        pause_reason=rules.USER,
        paused_at=func.now(),
    )
    await emit(
        session, CampaignPaused(**state(row), reason=rules.USER, paused_by=user), campaign_id
    )
    return view(row)


async def pause_for(session: AsyncSession, row: Any, reason: str) -> None:
    """The dispatcher stops a campaign: the number's messaging limit, or the number gone."""
    org, campaign_id = row["organization_id"], row["id"]
    paused = await update_campaign(
        session, org, campaign_id, status=rules.PAUSED, pause_reason=reason, paused_at=func.now()
    )
    event = CampaignPaused(**state(paused), reason=reason, paused_by=None)
    await emit(session, event, campaign_id)


async def resume(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, campaign_id: uuid.UUID
) -> Campaign:
    current = await load(session, org, campaign_id, lock=True)
    rules.check_action("resume", current["status"])
    scheduled = current["scheduled_at"]
    status = rules.SCHEDULED if scheduled and scheduled > datetime.now(UTC) else rules.RUNNING
    row = await update_campaign(
        session,
        org,
        campaign_id,
        status=status,
        pause_reason=None,
        paused_at=None,
        send_credit=0.0,
        credit_at=func.now(),
    )
    await emit(session, CampaignResumed(**state(row), resumed_by=user), campaign_id)
    return view(row)


async def cancel(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, campaign_id: uuid.UUID
) -> Campaign:
    current = await load(session, org, campaign_id, lock=True)
    rules.check_action("cancel", current["status"])
    r = recipients.c
    dropped = await session.execute(
        update(recipients)
        .where(r.organization_id == org, r.campaign_id == campaign_id, r.status == rules.QUEUED)
        .values(status=rules.RECIPIENT_CANCELLED, updated_at=func.now())
        .returning(r.id)
    )
    not_sent = len(dropped.all())
    row = await update_campaign(
        session, org, campaign_id, status=rules.CANCELLED, finished_at=func.now(), pause_reason=None
    )
    event = CampaignCancelled(**state(row), cancelled_by=user, not_sent=not_sent)
    await emit(session, event, campaign_id)
    return view(row)


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def check_schedule(scheduled_at: datetime | None, now: datetime) -> datetime | None:
    """A start time in the future (null or a time passed by under a minute: now)."""
    if scheduled_at is None:
        return None
    if scheduled_at.tzinfo is None:
        raise InvalidInput("scheduled_at needs a time zone (RFC 3339)", field="scheduled_at")
    if scheduled_at < now - timedelta(minutes=1):
        raise InvalidInput("scheduled_at is in the past", field="scheduled_at")
    return scheduled_at if scheduled_at > now else None
