"""``POST /v1/automation/flows/{id}/test``: the interpreter over sample inputs, sending nothing.

HTTP nodes are not called: the next input may be a sample answer (``{"http": {...}}``);
when the next input is something else the call is answered as failed (the transcript
shows the error path); with no inputs left the transcript ends showing the request.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pytake_automation.flows.definition import FlowDefinition
from pytake_automation.flows.interpreter import new_session, step
from pytake_automation.flows.session import (
    Event,
    Facts,
    HttpResult,
    Inbound,
    Reply,
    SessionState,
    Start,
    StepResult,
    Timeout,
)
from pytake_automation.flows.values import Scalar

NOT_CALLED = "not called in a test: give an http input to play the answer"


class SampleHttp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: int | None = Field(default=200, ge=100, le=599)
    body: Any = None
    error: str | None = Field(default=None, max_length=300)


class SampleInput(BaseModel):
    """One of: a text, a button/list reply, the ask's timeout, an HTTP answer."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, max_length=4096)
    reply: Reply | None = None
    timeout: Literal[True] | None = None
    http: SampleHttp | None = None

    @model_validator(mode="after")
    def _one(self) -> SampleInput:
        given = [x for x in (self.text, self.reply, self.timeout, self.http) if x is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of text, reply, timeout or http")
        return self


class SampleFacts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    contact_name: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list, max_length=100)
    business_hours_open: bool = True


class FlowTest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: a published version; default: the draft
    version: int | None = Field(default=None, ge=1)
    inputs: list[SampleInput] = Field(default_factory=list, max_length=100)
    facts: SampleFacts = Field(default_factory=SampleFacts)


class Turn(BaseModel):
    #: what happened: ``start``, ``text``, ``reply``, ``timeout``, ``http``
    event: str
    input: SampleInput | None = None
    #: the actions the step requested, in order (nothing was sent)
    actions: list[dict[str, Any]]
    #: ``waiting_reply``, ``waiting_http``, ``ended``
    status: str
    node_id: str | None
    #: the HTTP call the flow would make now
    http_request: dict[str, Any] | None = None
    #: seconds until the wait times out
    timer_seconds: int | None = None
    #: the input came when the flow was not waiting for it
    ignored: bool = False


class Transcript(BaseModel):
    version: int | None
    turns: list[Turn]
    status: str
    end_reason: str | None
    variables: dict[str, Scalar]
    answers: list[dict[str, Any]]
    #: inputs left unused because the session had ended
    unused_inputs: int = 0


def run(definition: FlowDefinition, body: FlowTest, version: int | None) -> Transcript:
    facts = Facts(
        contact_name=body.facts.contact_name,
        attributes=body.facts.attributes,
        tags=frozenset(body.facts.tags),
        business_hours_open=body.facts.business_hours_open,
    )
    state = new_session(
        definition, session_id=uuid.uuid4(), flow_id=uuid.uuid4(), version=version or 0
    )
    turns: list[Turn] = []
    pending = list(body.inputs)

    def play(event: Event, name: str, given: SampleInput | None) -> SessionState:
        before = state
        result = step(definition, before, event, facts)
        ignored = result.state == before and not result.actions
        turns.append(_turn(name, given, result, ignored))
        return result.state

    state = play(Start(), "start", None)
    while state.status != "ended" and pending:
        if state.status == "waiting_http":
            given = pending.pop(0) if pending[0].http is not None else None
            sample = given.http if given is not None and given.http else None
            if sample is None:
                answer = HttpResult(wait=state.wait, error=NOT_CALLED)
            else:
                answer = HttpResult(
                    wait=state.wait, status=sample.status, body=sample.body, error=sample.error
                )
            state = play(answer, "http", given)
            continue
        given = pending.pop(0)
        event: Event
        if given.timeout:
            event, name = Timeout(wait=state.wait), "timeout"
        elif given.reply is not None:
            event, name = Inbound(text=given.reply.title, reply=given.reply), "reply"
        elif given.http is not None:
            event, name = HttpResult(wait=-1), "http"  # no call is waiting for it
        else:
            event, name = Inbound(text=given.text), "text"
        state = play(event, name, given)
    return Transcript(
        version=version,
        turns=turns,
        status=state.status,
        end_reason=state.end_reason,
        variables=state.variables,
        answers=[a.model_dump(mode="json") for a in state.answers],
        unused_inputs=len(pending),
    )


def _turn(name: str, given: SampleInput | None, result: StepResult, ignored: bool) -> Turn:
    state = result.state
    return Turn(
        event=name,
        input=given,
        actions=[{k: v for k, v in a.items() if k != "action_id"} for a in result.actions],
        status=state.status,
        node_id=state.node_id,
        http_request=result.http.model_dump(exclude={"wait"}) if result.http else None,
        timer_seconds=result.timers[-1].after_seconds if result.timers else None,
        ignored=ignored,
    )
