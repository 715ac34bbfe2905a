"""Consumers: replicas first, then the triggers (rules, automatic messages, timers).

Each conversation event updates the conversations replica and hands the trigger to
:class:`pytake_automation.triggers.Triggers` in the same inbox transaction, so a trigger is
evaluated once per event id, and at most once per fact (runs are unique per (source,
trigger key)).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation import conversation_state as state
from pytake_automation.replicas import REPLICA_HANDLERS
from pytake_automation.triggers import Triggers
from pytake_common import event_types as et
from pytake_common.consumer import Handler
from pytake_common.events import CloudEvent, TenantEventData

M = TypeVar("M", bound=TenantEventData)


def _handler(
    model: type[M], apply: Callable[[AsyncSession, CloudEvent, M], Awaitable[None]]
) -> Handler:
    async def handle(session: AsyncSession, event: CloudEvent) -> None:
        await apply(session, event, event.parse_data(model))

    return handle


def handlers(triggers: Triggers) -> dict[str, Handler]:
    return {
        **REPLICA_HANDLERS,
        et.CONVERSATIONS_MESSAGE_APPENDED_V1: _handler(state.Appended, triggers.on_appended),
        et.CONVERSATIONS_CONVERSATION_OPENED_V1: _handler(state.Opened, triggers.on_opened),
        et.CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1: _handler(
            state.StatusMoved, triggers.on_status
        ),
        et.CONVERSATIONS_CONVERSATION_ASSIGNED_V1: _handler(state.Assigned, triggers.on_assigned),
        et.CONVERSATIONS_CONVERSATION_PRIORITY_CHANGED_V1: _handler(
            state.PriorityMoved, triggers.on_priority
        ),
    }
