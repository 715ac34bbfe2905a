"""What the interpreter reads and returns: session state, incoming events, the step result.

All plain data, so a session is one JSON column and a step is testable without I/O.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from pytake_automation.flows.values import Scalar

Status = Literal["running", "waiting_reply", "waiting_http", "ended"]


class Answer(BaseModel):
    """One validated answer, for the hand-off note."""

    node_id: str
    label: str
    value: Scalar
    #: what the customer saw (an option's title), when it differs from the value
    shown: str | None = None


class SessionState(BaseModel):
    session_id: uuid.UUID
    flow_id: uuid.UUID
    version: int
    status: Status = "running"
    node_id: str | None = None
    variables: dict[str, Scalar] = Field(default_factory=dict)
    #: contact attributes and tags this session changed (the replica lags behind)
    attributes: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, bool] = Field(default_factory=dict)
    answers: list[Answer] = Field(default_factory=list)
    last_answer: Scalar = None
    attempts: int = 0
    #: bumped whenever the session starts waiting; a timer or HTTP answer carries it,
    #: so one that belongs to an earlier wait is recognised and ignored
    wait: int = 0
    #: actions emitted so far: the next action id derives from it (same step, same ids)
    emitted: int = 0
    end_reason: str | None = None
    #: ids of the latest customer messages fed (the runtime's guard against the same
    #: message arriving again under another event id)
    seen_messages: list[str] = Field(default_factory=list)


class Reply(BaseModel):
    kind: Literal["button", "list"]
    id: str
    title: str = ""


class Start(BaseModel):
    kind: Literal["start"] = "start"


class Inbound(BaseModel):
    """A customer's message; ``reply`` for a button or list reply."""

    kind: Literal["inbound"] = "inbound"
    text: str | None = None
    reply: Reply | None = None
    message_type: str = "text"


class Timeout(BaseModel):
    kind: Literal["timeout"] = "timeout"
    wait: int


class HttpResult(BaseModel):
    kind: Literal["http_result"] = "http_result"
    wait: int
    status: int | None = None
    body: Any = None
    #: why no answer came (timeout, refused host, connection error)
    error: str | None = None


class Stop(BaseModel):
    """The session must end now: an agent replied, the conversation was assigned, ..."""

    kind: Literal["stop"] = "stop"
    reason: str


Event = Annotated[Start | Inbound | Timeout | HttpResult | Stop, Field(discriminator="kind")]


class Facts(BaseModel):
    """What the interpreter may know about the contact and the organization right now."""

    model_config = ConfigDict(frozen=True)

    contact_name: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    #: tag names and ids the contact carries
    tags: frozenset[str] = frozenset()
    business_hours_open: bool = True


class TimerRequest(BaseModel):
    """Deliver ``Timeout(wait)`` after ``after_seconds`` unless the session moved on."""

    wait: int
    after_seconds: int


class HttpRequest(BaseModel):
    """A call the runtime makes (allow-list and SSRF checks are its job) and answers
    with ``HttpResult(wait)``."""

    wait: int
    node_id: str
    method: str
    url: str
    headers: dict[str, str]
    body: Any = None
    timeout_seconds: float


class StepResult(BaseModel):
    state: SessionState
    #: in order, shaped as ``actions_requested`` actions (CONTRACT.md C)
    actions: list[dict[str, Any]] = Field(default_factory=list)
    #: timers to set; any timer set earlier for this session is obsolete
    timers: list[TimerRequest] = Field(default_factory=list)
    http: HttpRequest | None = None
