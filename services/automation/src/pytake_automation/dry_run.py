"""``POST /v1/automation/rules/dry-run``: which rules would act on a sample, and how.

Nothing is written or sent. The sample is a trigger (default ``message_received``) with a
text or reply, on a real conversation of the organization (its replica: contact tags and
attributes, status, department...) or on a described one; business hours are evaluated at
``at`` (default now) from the organization's settings unless the sample forces them.
Rules are the organization's enabled ones in order, or one inline rule not yet saved.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import conversation_state as state
from pytake_automation.business_hours import schedule_of
from pytake_automation.context import ContactView, ConversationView, TriggerContext
from pytake_automation.matching import RuleSet, compile_rule, select_rules
from pytake_automation.rule_cache import RuleCache
from pytake_automation.rule_model import Priority, RuleBody, Status, TriggerType
from pytake_automation.tables import contacts, organizations
from pytake_common.errors import NotFound


class SampleConversation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Status = "open"
    priority: Priority = "normal"
    department_id: uuid.UUID | None = None
    number_id: uuid.UUID | None = None
    tag_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)
    attributes: dict[str, Any] = Field(default_factory=dict)


class DryRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    trigger: TriggerType = "message_received"
    text: str | None = Field(default=None, max_length=4096)
    first_message: bool = False
    #: a conversation of the organization (its replica); or describe one in ``conversation``
    conversation_id: uuid.UUID | None = None
    conversation: SampleConversation | None = None
    at: datetime | None = None
    business_hours: Literal["open", "closed"] | None = None
    new_status: Status | None = None
    #: test one rule before saving it (else: the organization's enabled rules)
    rule: RuleBody | None = None


class Matched(BaseModel):
    rule_id: uuid.UUID | None
    name: str
    actions: list[dict[str, Any]]
    stop_processing: bool


class DryRunResult(BaseModel):
    business_open: bool
    matched: list[Matched]


async def dry_run(
    session: AsyncSession, cache: RuleCache, org: uuid.UUID, body: DryRun
) -> DryRunResult:
    at = body.at or datetime.now(UTC)
    org_settings = await session.scalar(
        select(organizations.c.settings).where(organizations.c.organization_id == org)
    )
    business_open = (
        body.business_hours == "open"
        if body.business_hours
        else schedule_of(dict(org_settings or {})).is_open(at)
    )
    conversation, contact = await _subject(session, org, body)
    ctx = TriggerContext(
        trigger=body.trigger,
        trigger_key="dry-run",
        at=at,
        conversation=conversation,
        contact=contact,
        business_open=business_open,
        text=body.text,
        first_message=body.first_message,
        new_status=body.new_status,
    )
    if body.rule is not None:
        row = {**body.rule.model_dump(mode="json"), "id": uuid.UUID(int=0)}
        rules = RuleSet(0, {body.rule.trigger.type: (compile_rule(row),)})
    else:
        rules = await cache.rules(session, org)
    candidates = rules.by_trigger.get(body.trigger, ())
    if body.trigger in ("no_agent_reply", "unassigned"):
        # a dry run has no armed timer: treat each timer rule as the one that fired
        chosen = [r for r in candidates if select_rules([r], _fired(ctx, r.id))]
    else:
        chosen = select_rules(candidates, ctx)
    return DryRunResult(
        business_open=business_open,
        matched=[
            Matched(
                rule_id=None if body.rule is not None else r.id,
                name=r.name,
                actions=list(r.actions),
                stop_processing=r.stop_processing,
            )
            for r in chosen
        ],
    )


def _fired(ctx: TriggerContext, rule_id: uuid.UUID) -> TriggerContext:
    return replace(ctx, timer_rule_id=rule_id)


async def _subject(
    session: AsyncSession, org: uuid.UUID, body: DryRun
) -> tuple[ConversationView, ContactView]:
    if body.conversation_id is not None:
        row = await state.load(session, org, body.conversation_id)
        if row is None:
            raise NotFound("no such conversation in this organization")
        found = (
            await session.execute(
                select(contacts).where(
                    contacts.c.id == row.contact_id, contacts.c.organization_id == org
                )
            )
        ).first()
        contact = ContactView(
            id=row.contact_id,
            name=found.name if found else None,
            tag_ids=frozenset(found.tag_ids if found else ()),
            attributes=dict(found.attributes or {}) if found else {},
        )
        return ConversationView.of(row), contact
    sample = body.conversation or SampleConversation()
    contact_id = uuid.UUID(int=0)
    conversation = ConversationView(
        id=uuid.UUID(int=0),
        organization_id=org,
        contact_id=contact_id,
        number_id=sample.number_id,
        status=sample.status,
        priority=sample.priority,
        assignee_id=None,
        department_id=sample.department_id,
        inbound_count=1 if body.first_message else 2,
        started_by_business=False,
    )
    contact = ContactView(
        id=contact_id, tag_ids=frozenset(sample.tag_ids), attributes=dict(sample.attributes)
    )
    return conversation, contact
