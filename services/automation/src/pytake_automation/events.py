"""Events automation publishes.

Topics (subject in brackets): ``pytake.automation.session`` (conversation id: everything
automation asks of one conversation is ordered), ``pytake.automation.rule`` (rule id).
Flows, SLA and CSAT add theirs on ``pytake.automation.flow|sla|csat``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pytake_common.events import EventData

SESSION_TOPIC = "pytake.automation.session"
RULE_TOPIC = "pytake.automation.rule"
FLOW_TOPIC = "pytake.automation.flow"
SLA_TOPIC = "pytake.automation.sla"
CSAT_TOPIC = "pytake.automation.csat"


class AutomationEvent(EventData):
    """An event automation publishes."""

    service = "automation"


# --- actions (applied by conversations or contacts, each ignoring the types it does not own)


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: deterministic (uuid5 of the trigger, the source and the action's index): a consumer
    #: applies an action id at most once, so a redelivered trigger never acts twice
    action_id: uuid.UUID


class SendText(_Action):
    type: Literal["send_text"] = "send_text"
    text: str = Field(min_length=1, max_length=4096)


class SendTemplate(_Action):
    type: Literal["send_template"] = "send_template"
    name: str = Field(min_length=1, max_length=512)
    language: str = Field(min_length=2, max_length=16)
    #: the parameter spec ``POST /v1/conversations`` accepts for templates
    parameters: dict[str, Any] | None = None


class SendInteractive(_Action):
    type: Literal["send_interactive"] = "send_interactive"
    #: the WhatsApp interactive object (button/list), exactly as the Graph API takes it
    interactive: dict[str, Any]


class SendMedia(_Action):
    """Image, video, audio or document (flows' media send; an addition to CONTRACT C)."""

    type: Literal["send_media"] = "send_media"
    media_type: Literal["image", "video", "audio", "document"]
    #: ``{link | id, caption?, filename?}``, the Graph API's media object
    media: dict[str, str]


class Assign(_Action):
    """To an agent, or to a department (conversations' round-robin within its caps)."""

    type: Literal["assign"] = "assign"
    agent_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Assign:
        if (self.agent_id is None) == (self.department_id is None):
            raise ValueError("assign names exactly one of agent_id, department_id")
        return self


class SetPriority(_Action):
    type: Literal["set_priority"] = "set_priority"
    priority: Literal["low", "normal", "high", "urgent"]


class SetStatus(_Action):
    type: Literal["set_status"] = "set_status"
    status: Literal["snoozed", "resolved", "closed"]
    #: snoozed only: when it wakes
    until: datetime | None = None


class AddNote(_Action):
    type: Literal["add_note"] = "add_note"
    text: str = Field(min_length=1, max_length=4096)


class _TagAction(_Action):
    tag_id: uuid.UUID | None = None
    tag_name: str | None = Field(default=None, min_length=1, max_length=64)

    @model_validator(mode="after")
    def _one_tag(self) -> _TagAction:
        if (self.tag_id is None) == (self.tag_name is None):
            raise ValueError("a tag action names exactly one of tag_id, tag_name")
        return self


class AddTag(_TagAction):
    type: Literal["add_tag"] = "add_tag"


class RemoveTag(_TagAction):
    type: Literal["remove_tag"] = "remove_tag"


class SetAttribute(_Action):
    type: Literal["set_attribute"] = "set_attribute"
    key: str = Field(min_length=1, max_length=64)
    value: Any = None


Action = Annotated[
    SendText
    | SendTemplate
    | SendInteractive
    | SendMedia
    | Assign
    | SetPriority
    | SetStatus
    | AddNote
    | AddTag
    | RemoveTag
    | SetAttribute,
    Field(discriminator="type"),
]
#: the action types conversations applies, in list order
CONVERSATION_ACTIONS = frozenset(
    {
        "send_text",
        "send_template",
        "send_interactive",
        "send_media",
        "assign",
        "set_priority",
        "set_status",
        "add_note",
    }
)
#: the action types contacts applies
CONTACT_ACTIONS = frozenset({"add_tag", "remove_tag", "set_attribute"})


class Source(BaseModel):
    """What asked: a rule, a flow, a schedule (automatic messages, auto-resolve), SLA, CSAT."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["rule", "flow", "schedule", "sla", "csat"]
    id: uuid.UUID | None = None
    run_id: uuid.UUID


class ActionsRequested(AutomationEvent):
    """Automation asks conversations and contacts to act on one conversation, in order."""

    event_type = "pytake.automation.session.actions_requested.v1"
    topic = SESSION_TOPIC

    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    number_id: uuid.UUID | None = None
    source: Source
    actions: list[Action] = Field(min_length=1)


# --- rules --------------------------------------------------------------------------------


class RuleState(AutomationEvent):
    rule_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    enabled: bool
    trigger: str
    position: int
    #: the organization's rule-set version after this change (caches compare it)
    version: int


class RuleCreated(RuleState):
    event_type = "pytake.automation.rule.created.v1"
    topic = RULE_TOPIC

    created_by: uuid.UUID | None


class RuleUpdated(RuleState):
    event_type = "pytake.automation.rule.updated.v1"
    topic = RULE_TOPIC

    updated_by: uuid.UUID | None


class RuleDeleted(AutomationEvent):
    event_type = "pytake.automation.rule.deleted.v1"
    topic = RULE_TOPIC

    rule_id: uuid.UUID
    organization_id: uuid.UUID
    version: int
    deleted_by: uuid.UUID | None


# --- SLA (subject: the policy for policy events, the conversation for applied/breached) ------


class SlaTargetBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    first_response_minutes: int | None = None
    resolution_minutes: int | None = None


class SlaPolicyState(AutomationEvent):
    policy_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    enabled: bool
    is_default: bool
    position: int
    department_ids: list[uuid.UUID]
    number_ids: list[uuid.UUID]
    business_hours: bool
    #: per priority (low, normal, high, urgent)
    targets: dict[str, SlaTargetBody]


class SlaPolicyCreated(SlaPolicyState):
    event_type = "pytake.automation.sla.created.v1"
    topic = SLA_TOPIC

    created_by: uuid.UUID | None


class SlaPolicyUpdated(SlaPolicyState):
    event_type = "pytake.automation.sla.updated.v1"
    topic = SLA_TOPIC

    updated_by: uuid.UUID | None


class SlaPolicyDeleted(AutomationEvent):
    event_type = "pytake.automation.sla.deleted.v1"
    topic = SLA_TOPIC

    policy_id: uuid.UUID
    organization_id: uuid.UUID
    deleted_by: uuid.UUID | None


class SlaApplied(AutomationEvent):
    """The SLA of a conversation's current cycle (opened or reopened at ``started_at``;
    a priority change re-applies the same cycle). Null policy and due times: none applies."""

    event_type = "pytake.automation.sla.applied.v1"
    topic = SLA_TOPIC

    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    policy_id: uuid.UUID | None
    first_response_due_at: datetime | None
    resolution_due_at: datetime | None
    priority: str
    business_hours: bool
    started_at: datetime
    #: when automation decided (orders two decisions on one conversation)
    applied_at: datetime


class SlaBreached(AutomationEvent):
    """A target of a conversation's SLA cycle came due unmet (once per target and cycle)."""

    event_type = "pytake.automation.sla.breached.v1"
    topic = SLA_TOPIC

    organization_id: uuid.UUID
    conversation_id: uuid.UUID
    policy_id: uuid.UUID | None
    kind: Literal["first_response", "resolution"]
    due_at: datetime
    breached_at: datetime
    started_at: datetime


# --- CSAT (subject: the survey) --------------------------------------------------------------


class CsatRecorded(AutomationEvent):
    """A customer rated a resolution (1 to 5), once per survey."""

    event_type = "pytake.automation.csat.recorded.v1"
    topic = CSAT_TOPIC

    organization_id: uuid.UUID
    survey_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    agent_id: uuid.UUID | None
    department_id: uuid.UUID | None
    rating: int
    resolved_at: datetime
    recorded_at: datetime


class CsatCommented(AutomationEvent):
    """The customer's text after their rating, kept as the survey's comment (once)."""

    event_type = "pytake.automation.csat.commented.v1"
    topic = CSAT_TOPIC

    organization_id: uuid.UUID
    survey_id: uuid.UUID
    conversation_id: uuid.UUID
    rating: int
    comment: str
    commented_at: datetime


# --- flows --------------------------------------------------------------------------------


class FlowState(AutomationEvent):
    flow_id: uuid.UUID
    organization_id: uuid.UUID
    name: str
    #: the newest published version; null until the first publish
    published_version: int | None = None


class FlowCreated(FlowState):
    event_type = "pytake.automation.flow.created.v1"
    topic = FLOW_TOPIC

    created_by: uuid.UUID | None


class FlowUpdated(FlowState):
    """The draft (or name, description) changed; running sessions are unaffected."""

    event_type = "pytake.automation.flow.updated.v1"
    topic = FLOW_TOPIC

    updated_by: uuid.UUID | None


class FlowPublished(FlowState):
    """A new immutable version: sessions started from now on run it."""

    event_type = "pytake.automation.flow.published.v1"
    topic = FLOW_TOPIC

    version: int
    published_by: uuid.UUID | None


class FlowDeleted(AutomationEvent):
    event_type = "pytake.automation.flow.deleted.v1"
    topic = FLOW_TOPIC

    flow_id: uuid.UUID
    organization_id: uuid.UUID
    deleted_by: uuid.UUID | None
    #: active sessions of the flow, ended by the deletion
    sessions_ended: int = 0
