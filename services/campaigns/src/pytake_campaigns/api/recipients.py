"""A campaign's recipients and its stats (every role reads them)."""

import uuid
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlalchemy import func, select

from pytake_campaigns import campaigns, rules
from pytake_campaigns.api.deps import DB, CampaignSettings
from pytake_campaigns.schemas import Recipient, RecipientPage, Stats
from pytake_campaigns.tables import recipients
from pytake_common.pagination import NUMBER, keyset
from pytake_common.security import Reader

#: a campaign's recipients in the order they were frozen (and are sent), by seq
RECIPIENTS = keyset("campaign-recipients", NUMBER)
RecipientStatus = Literal[
    "queued",
    "dispatched",
    "accepted",
    "unconfirmed",
    "sent",
    "delivered",
    "read",
    "replied",
    "failed",
    "cancelled",
]

router = APIRouter(prefix="/v1/campaigns", tags=["campaigns"])


@router.get("/{campaign_id}/recipients", response_model=RecipientPage)
async def list_recipients(
    campaign_id: uuid.UUID,
    principal: Reader,
    db: DB,
    status: RecipientStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> RecipientPage:
    after = RECIPIENTS.decode(cursor)[0] if cursor else None
    org = principal.organization_id
    r = recipients.c
    async with db.transaction(organization_id=org) as session:
        await campaigns.load(session, org, campaign_id)
        stmt = select(recipients).where(r.campaign_id == campaign_id, r.organization_id == org)
        if status is not None:
            stmt = stmt.where(r.status == status)
        if after is not None:
            stmt = stmt.where(r.seq > after)
        rows = (await session.execute(stmt.order_by(r.seq).limit(limit + 1))).mappings().all()
    items = [Recipient.model_validate(dict(row)) for row in rows[:limit]]
    more = len(rows) > limit
    return RecipientPage(
        items=items, next_cursor=RECIPIENTS.encode((rows[limit - 1]["seq"],)) if more else None
    )


@router.get("/{campaign_id}/stats", response_model=Stats)
async def campaign_stats(
    campaign_id: uuid.UUID, principal: Reader, db: DB, settings: CampaignSettings
) -> Stats:
    """Recipients per status, exclusions by reason, failures by code, replies and cost."""
    org = principal.organization_id
    r = recipients.c
    mine = (r.campaign_id == campaign_id, r.organization_id == org)
    async with db.transaction(organization_id=org) as session:
        campaign = await campaigns.load(session, org, campaign_id)
        counted = await session.execute(
            select(r.status, func.count()).where(*mine).group_by(r.status)
        )
        by_status: dict[str, int] = {status: n for status, n in counted}
        failed = await session.execute(
            select(func.coalesce(r.error_code, "unknown"), func.count())
            .where(*mine, r.status == rules.FAILED)
            .group_by(r.error_code)
        )
        failures: dict[str, int] = {code: n for code, n in failed}
        replied = await session.scalar(select(func.count()).where(*mine, r.replied_at.is_not(None)))
        costs = (
            await session.execute(
                select(r.pricing_category, func.sum(r.cost))
                .where(*mine, r.pricing_category.is_not(None))
                .group_by(r.pricing_category)
            )
        ).all()
        cost_by_category = {cat: float(total or Decimal(0)) for cat, total in costs}
    return Stats(
        campaign_id=campaign_id,
        status=campaign["status"],
        pause_reason=campaign["pause_reason"],
        recipients_total=campaign["recipients_total"],
        by_status={s: int(by_status.get(s, 0)) for s in rules.RECIPIENT_STATUSES},
        exclusions=campaign["exclusions"] or {},
        failures={str(k): int(v) for k, v in failures.items()},
        replied=int(replied or 0),
        cost_by_category=cost_by_category,
        cost_total=round(sum(cost_by_category.values()), 6),
        currency=settings.campaign_cost_currency,
    )
