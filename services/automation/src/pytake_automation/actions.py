"""Asking conversations and contacts to act: the one way automation changes anything.

Every source (rules, automatic messages, flows, SLA, CSAT) builds a list of action specs
(``{"type": "send_text", "text": ...}``, the shapes of :data:`pytake_automation.events.Action`
without ``action_id``) and calls :func:`request_actions` inside its transaction. Ids are
derived, not random: the run id from (source, trigger) and each action id from (source,
trigger, index), so processing the same trigger again (a redelivered event, a timer fired
twice) asks for the same action ids, which conversations and contacts apply once.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.events import Action, ActionsRequested, Source
from pytake_common.outbox import emit_many

#: namespace of the derived run and action ids
AUTOMATION_IDS = uuid.UUID("0d8e5f3a-6b1c-5a47-9e2d-7c4b1a9f3e60")
SourceKind = Literal["rule", "flow", "schedule", "sla", "csat"]
_ACTION = TypeAdapter(Action)


@dataclass(frozen=True, slots=True)
class Target:
    """The conversation acted on."""

    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID | None


def run_id(source_key: str, trigger_key: str) -> uuid.UUID:
    return uuid.uuid5(AUTOMATION_IDS, f"run:{source_key}:{trigger_key}")


def action_id(source_key: str, trigger_key: str, index: int) -> uuid.UUID:
    return uuid.uuid5(AUTOMATION_IDS, f"action:{source_key}:{trigger_key}:{index}")


def build_actions(
    source_key: str, trigger_key: str, specs: Sequence[Mapping[str, Any]]
) -> list[Action]:
    """Validated actions with their derived ids (``ValidationError`` on a bad spec)."""
    return [
        _ACTION.validate_python({**spec, "action_id": action_id(source_key, trigger_key, i)})
        for i, spec in enumerate(specs)
    ]


async def request_actions(
    session: AsyncSession,
    target: Target,
    *,
    kind: SourceKind,
    source_id: uuid.UUID | None,
    source_key: str,
    trigger_key: str,
    specs: Sequence[Mapping[str, Any]],
) -> ActionsRequested | None:
    """Stage ``actions_requested`` for ``target`` in the caller's transaction (outbox);
    ``None`` when there is nothing to ask. Keyed by the conversation: one order per
    conversation across every source."""
    payload = actions_requested(
        target,
        kind=kind,
        source_id=source_id,
        source_key=source_key,
        trigger_key=trigger_key,
        specs=specs,
    )
    if payload is not None:
        await emit_many(session, [(payload, target.conversation_id)])  # SQL text: cheaper
    return payload


def actions_requested(
    target: Target,
    *,
    kind: SourceKind,
    source_id: uuid.UUID | None,
    source_key: str,
    trigger_key: str,
    specs: Sequence[Mapping[str, Any]],
) -> ActionsRequested | None:
    """The ``actions_requested`` :func:`request_actions` stages (for callers staging
    several at once with ``emit_many``, keyed by ``target.conversation_id``)."""
    if not specs:
        return None
    return ActionsRequested(
        organization_id=target.organization_id,
        conversation_id=target.conversation_id,
        contact_id=target.contact_id,
        number_id=target.number_id,
        source=Source(kind=kind, id=source_id, run_id=run_id(source_key, trigger_key)),
        actions=build_actions(source_key, trigger_key, specs),
    )
