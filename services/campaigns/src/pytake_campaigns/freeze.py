"""Starting a campaign: its audience frozen into recipients in one set-based statement.

One ``INSERT ... SELECT`` over the contact replica makes one ``queued`` recipient per
contact of the audience (unique per campaign and contact) and counts, in the same
statement, who was left out and why:

- ``erased``: the contact's data was erased;
- ``blocked``: the contact is blocked;
- ``no_whatsapp_id``: the contact has no WhatsApp id to write to;
- ``no_marketing_consent``: a MARKETING template, and no marketing consent;
- ``not_found``: an explicit contact id that is no contact of this organization.

The monthly plan limit on campaign recipients is a per-month counter raised after the
insert, in the same transaction: past the limit, everything rolls back (the counter too)
and the start answers 402.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, func, literal, select, union_all
from sqlalchemy import case as sql_case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_campaigns import rules
from pytake_campaigns.audience import Audience, matched
from pytake_campaigns.campaigns import (
    DISCONNECTED,
    MONTHLY_RECIPIENTS_LIMIT,
    NumberDisconnected,
    check_schedule,
    check_sendable,
    load,
    month_start,
    state,
    update_campaign,
    view,
)
from pytake_campaigns.events import CampaignStarted
from pytake_campaigns.schemas import Campaign, CampaignTemplate, StartCampaign
from pytake_campaigns.tables import monthly_recipients, recipients
from pytake_common.errors import DomainError, PlanLimitExceeded
from pytake_common.outbox import emit
from pytake_common.tenancy import OrganizationDirectory

INSERTED = "__inserted"


class EmptyAudience(DomainError):
    status, code, title = 422, "audience_empty", "Nobody in the audience can be sent to"


class TooManyRecipients(DomainError):
    status, code, title = 422, "too_many_recipients", "The audience is too large"


def freeze_statement(
    org: uuid.UUID,
    campaign_id: uuid.UUID,
    number_id: uuid.UUID,
    audience: Audience,
    marketing: bool,
) -> Any:
    """SELECT (reason, count) rows: exclusions by reason, plus ``__inserted`` recipients."""
    found = matched(org, audience).cte("matched")
    m = found.c
    reason = sql_case(
        (m.erased_at.is_not(None), literal("erased")),
        (m.blocked, literal("blocked")),
        ((m.wa_id.is_(None) & m.user_id.is_(None)), literal("no_whatsapp_id")),
        ((literal(marketing) & ~m.marketing_opt_in), literal("no_marketing_consent")),
        else_=literal(None, String),
    ).label("reason")
    classified = select(m.contact_id, reason).cte("classified")
    k = classified.c
    inserted = (
        pg_insert(recipients)
        .from_select(
            ["id", "organization_id", "campaign_id", "contact_id", "number_id"],
            select(
                func.gen_random_uuid(),
                literal(org),
                literal(campaign_id),
                k.contact_id,
                literal(number_id),
            )
            .where(k.reason.is_(None))
            .order_by(k.contact_id),
        )
        .on_conflict_do_nothing(index_elements=["campaign_id", "contact_id"])
        .returning(recipients.c.id)
        .cte("inserted")
    )
    excluded = (
        select(k.reason, func.count().label("n")).where(k.reason.is_not(None)).group_by(k.reason)
    )
    made = select(literal(INSERTED).label("reason"), func.count().label("n")).select_from(inserted)
    parts = [excluded, made]
    if audience.contact_ids:
        ids = {*audience.contact_ids}
        known = (
            select(func.count()).select_from(found).where(m.contact_id.in_(ids)).scalar_subquery()
        )
        parts.append(select(literal("not_found").label("reason"), (len(ids) - known).label("n")))
    return union_all(*parts)


async def start(
    session: AsyncSession,
    directory: OrganizationDirectory | None,
    org: uuid.UUID,
    user: uuid.UUID | None,
    campaign_id: uuid.UUID,
    body: StartCampaign,
    campaign_max_recipients: int,
) -> Campaign:
    now = datetime.now(UTC)
    current = await load(session, org, campaign_id, lock=True)
    rules.check_action("start", current["status"])
    scheduled_at = check_schedule(body.scheduled_at, now)
    template = CampaignTemplate.model_validate(current["template"])
    number, found = await check_sendable(session, org, current["number_id"], template)
    if number["status"] == DISCONNECTED:
        raise NumberDisconnected("the number's access token was refused by Meta; update it first")
    category = found["category"]
    marketing = (category or "").upper() == rules.MARKETING
    audience = Audience.model_validate(current["audience"])
    counts = {
        row.reason: int(row.n)
        for row in await session.execute(
            freeze_statement(org, campaign_id, current["number_id"], audience, marketing)
        )
    }
    made = counts.pop(INSERTED, 0)
    exclusions = {reason: n for reason, n in counts.items() if n}
    if made == 0:
        raise EmptyAudience("no contact of the audience can be sent to", exclusions=exclusions)
    if made > campaign_max_recipients:
        raise TooManyRecipients(
            f"the audience has {made} recipients; at most {campaign_max_recipients}",
            recipients=made,
        )
    await _count_monthly(session, directory, org, made, now)
    row = await update_campaign(
        session,
        org,
        campaign_id,
        status=rules.SCHEDULED if scheduled_at else rules.RUNNING,
        template_category=category,
        scheduled_at=scheduled_at,
        started_at=now,
        recipients_total=made,
        exclusions=exclusions,
        send_credit=0.0,
        credit_at=now,
    )
    event = CampaignStarted(
        **state(row),
        recipients=made,
        exclusions=exclusions,
        scheduled_at=scheduled_at,
        started_by=user,
    )
    await emit(session, event, campaign_id)
    return view(row)


async def _count_monthly(
    session: AsyncSession,
    directory: OrganizationDirectory | None,
    org: uuid.UUID,
    made: int,
    now: datetime,
) -> None:
    """Add ``made`` to the recipients frozen this UTC calendar month and hold the plan.

    A counter, not a count of recipient rows: deleting a finished campaign does not give
    its recipients back. The upsert's row lock makes concurrent starts count in turn."""
    counter = pg_insert(monthly_recipients).values(
        organization_id=org, month=month_start(now).date(), recipients=made
    )
    total = await session.scalar(
        counter.on_conflict_do_update(
            index_elements=["organization_id", "month"],
            set_={"recipients": monthly_recipients.c.recipients + made},
        ).returning(monthly_recipients.c.recipients)
    )
    allowed = directory.limit(org, MONTHLY_RECIPIENTS_LIMIT) if directory is not None else None
    if allowed is not None and int(total or 0) > allowed:
        raise PlanLimitExceeded(MONTHLY_RECIPIENTS_LIMIT, allowed, int(total or 0) - made)
