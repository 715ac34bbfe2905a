"""CSAT: a survey when a conversation is resolved, the customer's rating and comment.

- **When**: a conversation's status changes to ``resolved`` and the organization enabled
  CSAT. One survey per resolution (unique on the conversation and the resolution's time),
  none to a blocked or erased contact, none to a contact surveyed within
  ``min_interval_hours`` (a reopened-and-resolved-again conversation does not survey twice
  in a row).
- **How**: inside the 24-hour window an interactive *list* with five rows, ``5 - Excellent``
  … ``1 - Very poor`` (WhatsApp allows at most three reply buttons, a list up to ten
  rows); outside it the configured approved template (its body asks for a number from 1
  to 5), or nothing when none is configured. Sent through ``actions_requested`` (source
  ``csat``, the survey's id): conversations applies the window and block rules again.
- **Rating**: the list row the customer chose (``reply.id`` = ``csat:<survey>:<n>``), or a
  reply — a template's quick-reply button or plain text — that is just a number from 1
  to 5, for the contact's open survey of the last seven days. Recorded once
  (``csat.recorded``). Conversations keeps a resolved conversation resolved when the
  rating comes as a list reply.
- **Comment**: the contact's next text within an hour of the rating (``csat.commented``);
  ``comment_prompt``, when set, is sent after the rating to invite it.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import and_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.actions import Target, request_actions
from pytake_automation.events import CsatCommented, CsatRecorded
from pytake_automation.tables import contacts, conversations, csat_settings, csat_surveys
from pytake_common.outbox import emit

#: reply ids of the survey's options: ``csat:<survey id>:<rating>``
REPLY_PREFIX = "csat:"
WINDOW = timedelta(hours=24)
#: how long an unanswered survey takes a bare number as its rating
ANSWER_WINDOW = timedelta(days=7)
#: how long after the rating the contact's next text is its comment
COMMENT_WINDOW = timedelta(hours=1)
RATINGS = {5: "5 - Excellent", 4: "4 - Good", 3: "3 - Okay", 2: "2 - Poor", 1: "1 - Very poor"}
#: a bare rating: ``4``, ``4/5``, ``4 - Good`` (a quick-reply button's text, or typed)
_NUMBER = re.compile(r"^([1-5])(?:\s*/\s*5|\s*-\s*[a-z ]{1,20})?$", re.IGNORECASE)
SENT, ANSWERED = "sent", "answered"
INTERACTIVE, TEMPLATE = "interactive", "template"


class CsatSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    question: str = Field(
        default="How would you rate the help you got today?", min_length=1, max_length=1024
    )
    #: an approved template asking for a rating from 1 to 5: sent outside the window
    template_name: str | None = Field(default=None, min_length=1, max_length=512)
    template_language: str = Field(default="en", min_length=2, max_length=16)
    #: sent after a rating, inviting a comment; none: no prompt (a comment is still kept)
    comment_prompt: str | None = Field(default=None, min_length=1, max_length=1024)
    #: a contact surveyed less than this many hours ago is not surveyed again
    min_interval_hours: int = Field(default=24, ge=0, le=24 * 90)


async def load_settings(session: AsyncSession, org: uuid.UUID) -> CsatSettings:
    row = (
        await session.execute(select(csat_settings).where(csat_settings.c.organization_id == org))
    ).one_or_none()
    if row is None:
        return CsatSettings()
    fields = {name: getattr(row, name) for name in CsatSettings.model_fields}
    return CsatSettings.model_validate(fields)


async def save_settings(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, body: CsatSettings
) -> CsatSettings:
    values = {**body.model_dump(), "updated_by": user, "updated_at": datetime.now(UTC)}
    stmt = pg_insert(csat_settings).values(organization_id=org, **values)
    await session.execute(
        stmt.on_conflict_do_update(index_elements=[csat_settings.c.organization_id], set_=values)
    )
    return body


def survey_list(survey_id: uuid.UUID, question: str) -> dict[str, Any]:
    """The WhatsApp interactive list of the survey (five rows, ids carrying the rating)."""
    rows = [
        {"id": f"{REPLY_PREFIX}{survey_id}:{n}", "title": title} for n, title in RATINGS.items()
    ]
    return {
        "type": "list",
        "body": {"text": question},
        "action": {"button": "Rate us", "sections": [{"title": "Your rating", "rows": rows}]},
    }


async def on_resolved(
    session: AsyncSession, org: uuid.UUID, conversation_id: uuid.UUID, resolved_at: datetime
) -> uuid.UUID | None:
    """Send the resolution's survey if it is due; the survey's id, or None."""
    settings = await load_settings(session, org)
    if not settings.enabled:
        return None
    conv = (
        await session.execute(
            select(conversations).where(
                conversations.c.id == conversation_id, conversations.c.organization_id == org
            )
        )
    ).one_or_none()
    if conv is None:
        return None
    contact = (
        await session.execute(
            select(contacts.c.blocked, contacts.c.erased).where(
                contacts.c.id == conv.contact_id, contacts.c.organization_id == org
            )
        )
    ).one_or_none()
    if contact is not None and (contact.blocked or contact.erased):
        return None
    if settings.min_interval_hours and await _surveyed_since(
        session, org, conv.contact_id, resolved_at - timedelta(hours=settings.min_interval_hours)
    ):
        return None
    inside = conv.last_inbound_at is not None and resolved_at - conv.last_inbound_at < WINDOW
    if not inside and settings.template_name is None:
        return None  # outside the window without a template: nothing may be sent
    survey_id = uuid.uuid4()
    created = await session.scalar(
        pg_insert(csat_surveys)
        .values(
            id=survey_id,
            organization_id=org,
            conversation_id=conversation_id,
            contact_id=conv.contact_id,
            resolved_at=resolved_at,
            agent_id=conv.assignee_id,
            department_id=conv.department_id,
            channel=INTERACTIVE if inside else TEMPLATE,
        )
        .on_conflict_do_nothing(constraint="uq_csat_surveys_resolution")
        .returning(csat_surveys.c.id)
    )
    if created is None:
        return None  # this resolution's survey exists (the same fact again)
    if inside:
        spec: dict[str, Any] = {
            "type": "send_interactive",
            "interactive": survey_list(survey_id, settings.question),
        }
    else:
        spec = {
            "type": "send_template",
            "name": settings.template_name,
            "language": settings.template_language,
        }
    await request_actions(
        session,
        Target(org, conversation_id, conv.contact_id, conv.number_id),
        kind="csat",
        source_id=survey_id,
        source_key=f"csat:{survey_id}",
        trigger_key="survey",
        specs=[spec],
    )
    return survey_id


async def _surveyed_since(
    session: AsyncSession, org: uuid.UUID, contact_id: uuid.UUID, since: datetime
) -> bool:
    found = await session.scalar(
        select(csat_surveys.c.id)
        .where(
            csat_surveys.c.organization_id == org,
            csat_surveys.c.contact_id == contact_id,
            csat_surveys.c.sent_at > since,
        )
        .limit(1)
    )
    return found is not None


def rating_of(reply_id: str | None, text: str | None) -> tuple[uuid.UUID | None, int | None]:
    """(survey id, rating) of a list reply ``csat:<survey>:<n>``; (None, n) of a reply or
    text that is just a number from 1 to 5 (``5 - Excellent`` too); (None, None) else."""
    if reply_id and reply_id.startswith(REPLY_PREFIX):
        survey, _, number = reply_id[len(REPLY_PREFIX) :].rpartition(":")
        try:
            rating = int(number)
            return uuid.UUID(survey), rating if 1 <= rating <= 5 else None
        except ValueError:
            return None, None
    match = _NUMBER.match((text or "").strip())
    if match:
        return None, int(match.group(1))
    return None, None


async def on_inbound(
    session: AsyncSession,
    org: uuid.UUID,
    conversation_id: uuid.UUID,
    contact_id: uuid.UUID,
    *,
    at: datetime,
    text: str | None,
    reply_id: str | None,
    number_id: uuid.UUID | None,
) -> None:
    """A customer's message: a survey's rating, or the comment that follows one."""
    survey_id, rating = rating_of(reply_id, text)
    s = csat_surveys.c
    if rating is not None:
        match = s.id == survey_id if survey_id else s.sent_at > at - ANSWER_WINDOW
        survey = (
            await session.execute(
                select(csat_surveys)
                .where(s.organization_id == org, s.contact_id == contact_id, s.status == SENT)
                .where(match)
                .order_by(s.sent_at.desc())
                .limit(1)
                .with_for_update()
            )
        ).one_or_none()
        if survey is not None:
            await _record(session, survey, rating, at, conversation_id, number_id)
            return
    if not text or reply_id:
        return
    survey = (
        await session.execute(
            select(csat_surveys)
            .where(
                s.organization_id == org,
                s.contact_id == contact_id,
                s.status == ANSWERED,
                s.comment.is_(None),
                s.answered_at > at - COMMENT_WINDOW,
                s.answered_at < at,
            )
            .order_by(s.answered_at.desc())
            .limit(1)
            .with_for_update()
        )
    ).one_or_none()
    if survey is None:
        return
    comment = text[:4096]
    await session.execute(
        update(csat_surveys).where(s.id == survey.id).values(comment=comment, commented_at=at)
    )
    commented = CsatCommented(
        organization_id=org,
        survey_id=survey.id,
        conversation_id=survey.conversation_id,
        rating=survey.rating,
        comment=comment,
        commented_at=at,
    )
    await emit(session, commented, survey.id)


async def _record(
    session: AsyncSession,
    survey: Any,
    rating: int,
    at: datetime,
    conversation_id: uuid.UUID,
    number_id: uuid.UUID | None,
) -> None:
    org = survey.organization_id
    await session.execute(
        update(csat_surveys)
        .where(and_(csat_surveys.c.id == survey.id, csat_surveys.c.status == SENT))
        .values(status=ANSWERED, rating=rating, answered_at=at)
    )
    recorded = CsatRecorded(
        organization_id=org,
        survey_id=survey.id,
        conversation_id=survey.conversation_id,
        contact_id=survey.contact_id,
        agent_id=survey.agent_id,
        department_id=survey.department_id,
        rating=rating,
        resolved_at=survey.resolved_at,
        recorded_at=at,
    )
    await emit(session, recorded, survey.id)
    settings = await load_settings(session, org)
    if settings.comment_prompt:
        await request_actions(
            session,
            Target(org, conversation_id, survey.contact_id, number_id),
            kind="csat",
            source_id=survey.id,
            source_key=f"csat:{survey.id}",
            trigger_key="rated",
            specs=[{"type": "send_text", "text": settings.comment_prompt}],
        )
