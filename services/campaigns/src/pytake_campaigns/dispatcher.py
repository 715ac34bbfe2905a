"""The dispatcher: releases a running campaign's recipients, paced, exactly once.

Every ``campaign_dispatch_tick_s`` each process looks for due campaigns (running, or scheduled
and due) and takes each in a transaction of its own, locking the campaign row with
``FOR UPDATE SKIP LOCKED``: many replicas share the work and never release the same
campaign at once. For one campaign, one tick:

1. refills its token bucket (:func:`rules.pace`): ``min(rate cap, number throughput)``
   per second, at most one second saved;
2. counts what is in flight (dispatched or accepted, not yet sent/failed/refused): at
   most ``rate * campaign_in_flight_window_s`` may be, so a pause stops new sends within
   that, and at most ``throughput * window`` on the number across its campaigns;
3. counts the number's business-initiated recipients of the last 24 h against its tier
   (``initiations``): with no room left and recipients still queued, the campaign pauses
   with reason ``messaging_limit``;
4. moves the next recipients ``queued -> dispatched`` and writes one
   ``recipient.dispatched`` event each to the outbox, *in the same transaction*: a crash
   before the commit releases nobody, after it nobody again (conversations also keeps at
   most one message per ``recipient_id``);
A tick that can release nothing stops early and writes nothing: before counting when
the bucket holds less than one send (the credit is a function of the time since
``credit_at``, capped at a second's: a later tick refills it exactly as if this one had
written it), before the messaging limit and the number's room when the campaign's own
window is full (what most ticks find while a campaign drains slower than its rate).

5. completes the campaign when no recipient is queued or in flight. A send whose outcome
   never came (its answer lost: whatsapp-gateway's UNCONFIRMED, or conversations never
   took it) would keep it running forever: once nothing is queued, a recipient
   dispatched more than ``campaign_unconfirmed_after_s`` ago and still dispatched or
   accepted is marked ``unconfirmed`` (not sent again: a duplicate is worse than an
   unknown; the stats count it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_campaigns import rules
from pytake_campaigns.campaigns import DISCONNECTED, REMOVED, pause_for, state, update_campaign
from pytake_campaigns.config import Settings
from pytake_campaigns.events import (
    CampaignCompleted,
    RecipientDispatched,
    TemplateParameters,
    TemplateRef,
)
from pytake_campaigns.progress import record_initiations
from pytake_campaigns.tables import campaigns, initiations, number_replicas, recipients
from pytake_common import rawpg
from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.outbox import add_events, emit

log = logging.getLogger(__name__)
DAY = timedelta(hours=24)

#: The campaigns that may send now: running, or scheduled and due ($1, $2: the statuses).
_DUE = """
    SELECT organization_id, id FROM campaigns
    WHERE status = $1 OR (status = $2 AND scheduled_at <= now())
    ORDER BY started_at
"""


class Dispatcher:
    def __init__(self, settings: Settings, db: Database) -> None:
        self.settings = settings
        self.db = db
        #: recipients released by this process (tests and metrics read it)
        self.released = 0

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self.tick()
                backoff = 0.5
                await sleep_or_stop(stop, self.settings.campaign_dispatch_tick_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("dispatcher error, retrying", extra={"error": repr(exc)})
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 10.0)

    async def due(self) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(organization, campaign) of every campaign that may send now, across tenants.

        Asked every tick (10 a second) by every replica, campaigns or none: plain SQL on
        asyncpg (pytake_common.rawpg), a tenth of a SQLAlchemy session's CPU; most of
        the service's idle CPU was this question."""
        async with rawpg.transaction(self.db, bypass_rls=True) as conn:
            rows = await conn.fetch(_DUE, rules.RUNNING, rules.SCHEDULED)
        return [(r["organization_id"], r["id"]) for r in rows]

    async def tick(self) -> int:
        """One pass over the due campaigns; returns how many recipients were released."""
        released = 0
        for org, campaign_id in await self.due():
            async with self.db.transaction(organization_id=org) as session:
                released += await self.advance(session, org, campaign_id)
        self.released += released
        return released

    async def advance(self, session: AsyncSession, org: uuid.UUID, campaign_id: uuid.UUID) -> int:
        c = campaigns.c
        row = (
            (
                await session.execute(
                    select(campaigns)
                    .where(
                        c.id == campaign_id,
                        c.organization_id == org,
                        c.status.in_((rules.RUNNING, rules.SCHEDULED)),
                    )
                    .with_for_update(skip_locked=True)
                )
            )
            .mappings()
            .first()
        )
        now = datetime.now(UTC)
        if row is None:
            return 0  # another replica has it, or it was paused/cancelled meanwhile
        if row["status"] == rules.SCHEDULED:
            if row["scheduled_at"] is None or row["scheduled_at"] > now:
                return 0
            row = await update_campaign(
                session, org, campaign_id, status=rules.RUNNING, send_credit=0.0, credit_at=now
            )
        number = (
            (
                await session.execute(
                    select(number_replicas).where(
                        number_replicas.c.id == row["number_id"],
                        number_replicas.c.organization_id == org,
                    )
                )
            )
            .mappings()
            .first()
        )
        throughput = (number and number["throughput_per_second"]) or (
            self.settings.campaign_default_throughput_per_second
        )
        rate = rules.send_rate(row["rate_per_second"], throughput)
        elapsed = (now - (row["credit_at"] or now)).total_seconds()
        if row["credit_at"] is not None and rules.refill(rate, row["send_credit"], elapsed) < 1:
            # Not one send's credit yet: nothing to count or write (the next tick refills
            # from credit_at exactly as if this one had written its credit).
            return 0
        in_flight, queued = await self._counts(session, org, campaign_id, rate, now)
        if queued == 0:
            if in_flight == 0 and not await self._unsettled(session, org, campaign_id, now):
                await self._complete(session, row, now)
            return 0
        if number is None or number["status"] in (DISCONNECTED, REMOVED):
            # every send would be refused: keep the audience for when the number is back
            await pause_for(session, row, rules.NUMBER_UNAVAILABLE)
            return 0
        if in_flight >= math.ceil(rate * self.settings.campaign_in_flight_window_s):
            # Its own window is full (a campaign draining slower than its rate: most
            # ticks): nothing can go, whatever the messaging limit and the number's room
            # say; they are read, and the credit written, on a tick that may release.
            return 0
        allowance = await self._allowance(session, org, row["number_id"], number, now)
        if allowance is not None and allowance <= 0:
            await pause_for(session, row, rules.MESSAGING_LIMIT)
            return 0
        # the number's own window, shared by its campaigns (never more than ~1 s of its
        # throughput in flight, whatever else runs on it)
        room = await self._number_room(session, org, row["number_id"], throughput, now)
        pace = rules.pace(
            rate,
            row["send_credit"],
            elapsed,
            in_flight,
            self.settings.campaign_in_flight_window_s,
            queued,
            room if allowance is None else min(room, allowance),
        )
        if pace.release:
            await self._release(session, row, pace.release, now)
        await session.execute(
            update(campaigns)
            .where(c.id == campaign_id, c.organization_id == org)
            .values(send_credit=pace.credit, credit_at=now)
        )
        return pace.release

    async def _counts(
        self,
        session: AsyncSession,
        org: uuid.UUID,
        campaign_id: uuid.UUID,
        rate: int,
        now: datetime,
    ) -> tuple[int, int]:
        """Sends in flight (not stale), and queued recipients up to what one tick could use."""
        r = recipients.c
        stale = now - timedelta(seconds=self.settings.campaign_in_flight_stale_after_s)
        mine = (r.organization_id == org, r.campaign_id == campaign_id)
        flying = select(r.id).where(*mine, r.status.in_(rules.IN_FLIGHT), r.dispatched_at > stale)
        waiting = select(r.id).where(*mine, r.status == rules.QUEUED)
        in_flight = await session.scalar(
            select(func.count()).select_from(flying.limit(rate * 20 + 1).subquery())
        )
        queued = await session.scalar(
            select(func.count()).select_from(waiting.limit(rate + 1).subquery())
        )
        return int(in_flight or 0), int(queued or 0)

    async def _number_room(
        self,
        session: AsyncSession,
        org: uuid.UUID,
        number_id: uuid.UUID,
        throughput: int,
        now: datetime,
    ) -> int:
        r = recipients.c
        window = math.ceil(throughput * self.settings.campaign_in_flight_window_s)
        stale = now - timedelta(seconds=self.settings.campaign_in_flight_stale_after_s)
        flying = select(r.id).where(
            r.organization_id == org,
            r.number_id == number_id,
            r.status.in_(rules.IN_FLIGHT),
            r.dispatched_at > stale,
        )
        used = await session.scalar(
            select(func.count()).select_from(flying.limit(window + 1).subquery())
        )
        return window - int(used or 0)

    async def _unsettled(
        self, session: AsyncSession, org: uuid.UUID, campaign_id: uuid.UUID, now: datetime
    ) -> bool:
        """Whether a recipient still waits for its outcome, once those that waited too
        long are marked ``unconfirmed``."""
        if not await self._pending(session, org, campaign_id):
            return False
        r = recipients.c
        given_up = now - timedelta(seconds=self.settings.campaign_unconfirmed_after_s)
        await session.execute(
            update(recipients)
            .where(
                r.organization_id == org,
                r.campaign_id == campaign_id,
                r.status.in_(rules.IN_FLIGHT),
                r.dispatched_at <= given_up,
            )
            .values(status=rules.UNCONFIRMED, updated_at=now)
        )
        return await self._pending(session, org, campaign_id)

    async def _pending(self, session: AsyncSession, org: uuid.UUID, campaign_id: uuid.UUID) -> bool:
        r = recipients.c
        return bool(
            await session.scalar(
                select(
                    exists().where(
                        r.organization_id == org,
                        r.campaign_id == campaign_id,
                        r.status.in_(rules.PENDING),
                    )
                )
            )
        )

    async def _allowance(
        self,
        session: AsyncSession,
        org: uuid.UUID,
        number_id: uuid.UUID,
        number: Any,
        now: datetime,
    ) -> int | None:
        """New unique recipients the number may still reach in this rolling 24 h."""
        limit = rules.tier_limit(number["messaging_limit_tier"] if number else None)
        if limit is None:
            return None
        i = initiations.c
        used = await session.scalar(
            select(func.count(func.distinct(i.contact_id))).where(
                i.organization_id == org, i.number_id == number_id, i.at > now - DAY
            )
        )
        return limit - int(used or 0)

    async def _release(self, session: AsyncSession, row: Any, n: int, now: datetime) -> None:
        r = recipients.c
        org, campaign_id = row["organization_id"], row["id"]
        picked = (
            select(r.id)
            .where(r.organization_id == org, r.campaign_id == campaign_id, r.status == rules.QUEUED)
            .order_by(r.seq)
            .limit(n)
            .with_for_update(skip_locked=True)
            .cte("picked")
        )
        released = (
            await session.execute(
                update(recipients)
                .where(r.id == picked.c.id)
                .values(status=rules.DISPATCHED, dispatched_at=now, updated_at=now)
                .returning(r.id, r.contact_id, r.number_id)
            )
        ).all()
        if not released:
            return
        template = row["template"]
        ref = TemplateRef(
            name=template["name"], language=template["language"], category=row["template_category"]
        )
        spec = TemplateParameters(
            parameters=template.get("parameters") or [],
            header_parameters=template.get("header_parameters") or [],
            button_parameters=template.get("button_parameters") or [],
        )
        # the events and the messaging limit's facts: one statement each (one row per
        # recipient through unnest), whatever the number released
        await add_events(
            session,
            [
                CloudEvent.of(
                    RecipientDispatched(
                        organization_id=org,
                        campaign_id=campaign_id,
                        recipient_id=rec.id,
                        contact_id=rec.contact_id,
                        number_id=rec.number_id,
                        template=ref,
                        parameters=spec,
                    ),
                    subject=rec.id,
                )
                for rec in released
            ],
        )
        await record_initiations(
            await rawpg.driver(session),
            org,
            [(rec.number_id, rec.contact_id, now, f"recipient:{rec.id}") for rec in released],
        )

    async def _complete(self, session: AsyncSession, row: Any, now: datetime) -> None:
        done = await update_campaign(
            session, row["organization_id"], row["id"], status=rules.COMPLETED, finished_at=now
        )
        event = CampaignCompleted(**state(done), completed_at=now)
        await emit(session, event, row["id"])
