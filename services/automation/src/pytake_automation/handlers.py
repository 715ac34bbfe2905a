"""Consumers: replicas first, then the triggers (rules, automatic messages, timers).

Each conversation event updates the conversations replica and hands the trigger to
:class:`pytake_automation.triggers.Triggers` in the same inbox transaction, so a trigger is
evaluated once per event id, and at most once per fact (runs are unique per (source,
trigger key)). Conversations' events go to one ordered set handler of the kit: a batch's
run of them keeps its order (rules read the replica that status and assignment events
move), and a run's customers' messages are handled together
(:meth:`~pytake_automation.triggers.Triggers.on_conversation_events`).
"""

from __future__ import annotations

from pytake_automation import conversation_state as state
from pytake_automation.replicas import REPLICA_HANDLERS
from pytake_automation.triggers import Triggers
from pytake_common import event_types as et
from pytake_common.consumer import Handler, SetHandler
from pytake_common.events import CloudEvent, TenantEventData

#: what automation reads of each conversations' event
CONVERSATION_EVENTS: dict[str, type[TenantEventData]] = {
    et.CONVERSATIONS_MESSAGE_APPENDED_V1: state.Appended,
    et.CONVERSATIONS_CONVERSATION_OPENED_V1: state.Opened,
    et.CONVERSATIONS_CONVERSATION_STATUS_CHANGED_V1: state.StatusMoved,
    et.CONVERSATIONS_CONVERSATION_ASSIGNED_V1: state.Assigned,
    et.CONVERSATIONS_CONVERSATION_PRIORITY_CHANGED_V1: state.PriorityChanged,
}


def _fact(event: CloudEvent) -> TenantEventData:
    return event.parse_data(CONVERSATION_EVENTS[event.type])


def handlers(triggers: Triggers) -> dict[str, Handler]:
    conversation: SetHandler[TenantEventData] = SetHandler(
        TenantEventData, triggers.on_conversation_events, parse=_fact, ordered=True
    )
    return {**REPLICA_HANDLERS, **dict.fromkeys(CONVERSATION_EVENTS, conversation)}
