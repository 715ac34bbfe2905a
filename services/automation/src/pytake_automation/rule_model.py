"""What a rule is, as the API takes it: a trigger, conditions (all/any), actions, in order.

Triggers: ``message_received``, ``conversation_opened``, ``status_changed`` (optionally to
given statuses), ``assigned``, ``no_agent_reply`` and ``unassigned`` (after ``minutes``).
Conditions are typed objects (no user regex): text contains words/phrases, contact tag,
contact attribute, business hours, conversation status/priority/department/number, first
message. Actions are CONTRACT C's (``send_text``... ``set_attribute``) plus ``start_flow``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from pytake_automation.events import Action
from pytake_automation.text_match import MAX_PHRASE, phrase_key

TriggerType = Literal[
    "message_received",
    "conversation_opened",
    "status_changed",
    "assigned",
    "no_agent_reply",
    "unassigned",
]
TIMER_TRIGGERS = frozenset({"no_agent_reply", "unassigned"})
#: the longest a timer trigger may wait (a week)
MAX_MINUTES = 7 * 24 * 60
MAX_ACTIONS = 20
Status = Literal["open", "pending", "resolved", "closed"]
Priority = Literal["low", "normal", "high", "urgent"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Trigger(Strict):
    type: TriggerType
    #: timer triggers only: how long without an agent's reply / an assignee
    minutes: int | None = Field(default=None, ge=1, le=MAX_MINUTES)
    #: status_changed only: fire only for these new statuses (empty: any)
    statuses: list[Status] = Field(default_factory=list, max_length=4)

    @model_validator(mode="after")
    def _minutes(self) -> Self:
        if (self.type in TIMER_TRIGGERS) != (self.minutes is not None):
            raise ValueError("minutes is required for no_agent_reply/unassigned and only there")
        if self.statuses and self.type != "status_changed":
            raise ValueError("statuses is only for status_changed")
        return self


Phrase = Annotated[str, Field(min_length=1, max_length=MAX_PHRASE)]


class TextContains(Strict):
    """The message's text (or the chosen reply's title) holds any of these words/phrases."""

    type: Literal["text_contains"]
    words: list[Phrase] = Field(min_length=1, max_length=50)

    @model_validator(mode="after")
    def _has_letters(self) -> Self:
        for word in self.words:
            if phrase_key(word) is None:
                raise ValueError(f"{word!r} has no letters or digits")
        return self


class ContactTag(Strict):
    type: Literal["contact_tag"]
    tag_id: uuid.UUID
    #: false: the contact must NOT have the tag
    present: bool = True


class ContactAttribute(Strict):
    type: Literal["contact_attribute"]
    key: str = Field(min_length=1, max_length=64)
    op: Literal["equals", "not_equals", "exists", "not_exists"] = "equals"
    value: str | int | float | bool | None = None

    @model_validator(mode="after")
    def _value(self) -> Self:
        if self.op in ("equals", "not_equals") and self.value is None:
            raise ValueError(f"{self.op} needs a value")
        return self


class BusinessHours(Strict):
    type: Literal["business_hours"]
    state: Literal["open", "closed"]


class ConversationStatus(Strict):
    type: Literal["conversation_status"]
    any_of: list[Status] = Field(min_length=1, max_length=4)


class ConversationPriority(Strict):
    type: Literal["conversation_priority"]
    any_of: list[Priority] = Field(min_length=1, max_length=4)


class ConversationDepartment(Strict):
    """In one of these departments; ``none: true`` also matches a conversation with none."""

    type: Literal["conversation_department"]
    any_of: list[uuid.UUID] = Field(default_factory=list, max_length=50)
    none: bool = False


class ConversationNumber(Strict):
    type: Literal["conversation_number"]
    any_of: list[uuid.UUID] = Field(min_length=1, max_length=50)


class FirstMessage(Strict):
    """The customer's first message in the conversation (or, false, any later one)."""

    type: Literal["first_message"]
    value: bool = True


Condition = Annotated[
    TextContains
    | ContactTag
    | ContactAttribute
    | BusinessHours
    | ConversationStatus
    | ConversationPriority
    | ConversationDepartment
    | ConversationNumber
    | FirstMessage,
    Field(discriminator="type"),
]


class StartFlow(Strict):
    type: Literal["start_flow"]
    flow_id: uuid.UUID


_ACTION = TypeAdapter(Action)
_NIL = "00000000-0000-0000-0000-000000000000"


def check_action(spec: dict[str, Any]) -> dict[str, Any]:
    """One action as stored: CONTRACT C's shape without ``action_id``, or ``start_flow``."""
    if "action_id" in spec:
        raise ValueError("action_id is derived, not given")
    if spec.get("type") == "start_flow":
        return StartFlow.model_validate(spec).model_dump(mode="json")
    try:
        action = _ACTION.validate_python({**spec, "action_id": _NIL})
    except ValidationError as exc:
        raise ValueError(f"invalid action {spec.get('type')!r}: {exc.errors()[0]['msg']}") from exc
    dumped: dict[str, Any] = action.model_dump(mode="json", exclude={"action_id"})
    return dumped


class RuleBody(Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    enabled: bool = True
    #: evaluation order (ascending); rules with the same position run oldest first
    position: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    trigger: Trigger
    match: Literal["all", "any"] = "all"
    conditions: list[Condition] = Field(default_factory=list, max_length=20)
    actions: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_ACTIONS)
    #: later rules are not evaluated for this trigger once this one acted
    stop_processing: bool = False

    @model_validator(mode="after")
    def _actions(self) -> Self:
        self.actions = [check_action(a) for a in self.actions]
        return self


class RulePatch(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    enabled: bool | None = None
    position: int | None = Field(default=None, ge=-1_000_000, le=1_000_000)
    trigger: Trigger | None = None
    match: Literal["all", "any"] | None = None
    conditions: list[Condition] | None = Field(default=None, max_length=20)
    actions: list[dict[str, Any]] | None = Field(default=None, min_length=1, max_length=MAX_ACTIONS)
    stop_processing: bool | None = None
