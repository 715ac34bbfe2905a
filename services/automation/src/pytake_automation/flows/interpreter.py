"""The flow interpreter as one pure function: (flow, state, event, facts) -> StepResult.

It performs no I/O: messages, tags, attributes, notes and assignments come out as
``actions_requested`` actions in order; waiting for an answer comes out as a timer;
calling an HTTP endpoint comes out as an :class:`HttpRequest` whose answer the runtime
feeds back as an event. The same state and event always give the same result, action
ids included, so a step replayed after a crash requests the very same actions.
"""

from __future__ import annotations

import uuid
from typing import Any

from pytake_automation.flows import values
from pytake_automation.flows.definition import (
    AnswerIs,
    AskNode,
    AttributeIs,
    BranchNode,
    BusinessHours,
    ButtonsMessage,
    Condition,
    EndNode,
    FlowDefinition,
    HandoffNode,
    HasTag,
    HttpNode,
    ListMessage,
    MediaMessage,
    Message,
    SendNode,
    SetAttributeNode,
    SetTagNode,
    TextMessage,
    VariableIs,
    choices_of,
)
from pytake_automation.flows.session import (
    Answer,
    Event,
    Facts,
    HttpRequest,
    HttpResult,
    Inbound,
    SessionState,
    Start,
    StepResult,
    Stop,
    Timeout,
    TimerRequest,
)
from pytake_automation.flows.validation import (
    BODY_MAX,
    BUTTON_TITLE_MAX,
    FOOTER_MAX,
    HEADER_MAX,
    LIST_BODY_MAX,
    LIST_BUTTON_MAX,
    ROW_DESCRIPTION_MAX,
    ROW_TITLE_MAX,
    SECTION_TITLE_MAX,
)

#: nodes one step may pass through before the session is ended as a loop
MAX_NODES_PER_STEP = 50
DEFAULT_REPROMPT = "Sorry, I did not understand that."


def new_session(
    flow: FlowDefinition, *, session_id: uuid.UUID, flow_id: uuid.UUID, version: int
) -> SessionState:
    return SessionState(session_id=session_id, flow_id=flow_id, version=version, node_id=flow.start)


def step(flow: FlowDefinition, state: SessionState, event: Event, facts: Facts) -> StepResult:
    run = _Run(flow, state.model_copy(deep=True), facts)
    if run.state.status != "ended":
        run.handle(event)
    return run.result()


class _Run:
    def __init__(self, flow: FlowDefinition, state: SessionState, facts: Facts) -> None:
        self.flow, self.state, self.facts = flow, state, facts
        self.actions: list[dict[str, Any]] = []
        self.timers: list[TimerRequest] = []
        self.http: HttpRequest | None = None

    def result(self) -> StepResult:
        return StepResult(
            state=self.state, actions=self.actions, timers=self.timers, http=self.http
        )

    # -- events -------------------------------------------------------------------------

    def handle(self, event: Event) -> None:
        state = self.state
        if isinstance(event, Stop):
            self.end(event.reason)
        elif isinstance(event, Start):
            if state.status == "running" and state.node_id is not None:
                self.enter(state.node_id)
        elif isinstance(event, Inbound):
            if self._is_stop_word(event):
                if self.flow.stop_message:
                    self.say(self.flow.stop_message)
                self.end("stop_word")
            elif state.status == "waiting_reply":
                self.answer(event)
        elif event.wait != state.wait:
            return  # a timer or an HTTP answer of an earlier wait
        elif isinstance(event, Timeout) and state.status == "waiting_reply":
            self.timed_out()
        elif isinstance(event, HttpResult) and state.status == "waiting_http":
            self.http_answered(event)

    def _is_stop_word(self, event: Inbound) -> bool:
        if event.reply is not None or not event.text:
            return False
        said = values.bare(event.text)
        return any(said == values.bare(word) for word in self.flow.stop_words)

    # -- moving through the graph -------------------------------------------------------

    def enter(self, node_id: str | None) -> None:
        for _ in range(MAX_NODES_PER_STEP):
            if node_id is None:
                self.end("completed")
                return
            self.state.node_id, self.state.status = node_id, "running"
            node_id = self.visit(node_id)
            if self.state.status != "running":
                return
        self.end("loop_limit")

    def visit(self, node_id: str) -> str | None:
        """Do the node's work; the next node to enter, or None with the status changed."""
        node = self.flow.node(node_id)
        if isinstance(node, SendNode):
            self.send(node.message)
            return node.next
        if isinstance(node, AskNode):
            self.send(node.prompt)
            self.wait_for_reply(node)
            return None
        if isinstance(node, BranchNode):
            return next((c.next for c in node.cases if self.holds(c.when)), node.default)
        if isinstance(node, SetTagNode):
            self.tag(node.tag, remove=node.remove)
            return node.next
        if isinstance(node, SetAttributeNode):
            self.set_attribute(node.key, values.render(node.value, self.lookup))
            return node.next
        if isinstance(node, HttpNode):
            self.call(node)
            return None
        if isinstance(node, HandoffNode):
            self.hand_off(node)
            return None
        assert isinstance(node, EndNode)
        if node.message:
            self.say(node.message)
        if node.resolve:
            self.emit("set_status", status="resolved")
        self.end("completed")
        return None

    def end(self, reason: str) -> None:
        self.state.status, self.state.end_reason = "ended", reason
        self.state.node_id = None

    def wait_for_reply(self, node: AskNode) -> None:
        self.state.status = "waiting_reply"
        self.state.wait += 1
        after = node.timeout_seconds or self.flow.idle_timeout_seconds
        self.timers.append(TimerRequest(wait=self.state.wait, after_seconds=after))

    # -- ask --------------------------------------------------------------------------

    def answer(self, event: Inbound) -> None:
        node = self.flow.node(self.state.node_id or "")
        assert isinstance(node, AskNode)
        accepted = self.accept(node, event)
        if accepted is None:
            self.state.attempts += 1
            if self.state.attempts >= node.max_attempts:
                self.state.attempts = 0
                if node.on_invalid is None:
                    self.end("invalid_answer")
                else:
                    self.enter(node.on_invalid)
                return
            self.say(node.reprompt or DEFAULT_REPROMPT)
            self.send(node.prompt)
            self.wait_for_reply(node)
            return
        value, shown = accepted
        self.state.attempts = 0
        self.record(node, value, shown)
        self.enter(node.next)

    def accept(self, node: AskNode, event: Inbound) -> tuple[values.Scalar, str | None] | None:
        rule = node.validate_as
        if rule.kind == "option":
            options = [(o.id, o.title) for o in rule.options or []] or choices_of(node.prompt)
            return _option(options, event)
        text = event.text if event.reply is None else event.reply.title
        if text is None or not text.strip():
            return None
        text = text.strip()
        if rule.kind == "number":
            number = values.parse_number(text)
            if number is None or (rule.minimum is not None and number < rule.minimum):
                return None
            if rule.maximum is not None and number > rule.maximum:
                return None
            return (int(number) if number.is_integer() else number), None
        if rule.kind == "email":
            email = values.parse_email(text)
            return None if email is None else (email, None)
        if rule.kind == "date":
            day = values.parse_date(text)
            return None if day is None else (day, None)
        if rule.min_length is not None and len(text) < rule.min_length:
            return None
        if rule.max_length is not None and len(text) > rule.max_length:
            return None
        return text[: values.VALUE_MAX], None

    def record(self, node: AskNode, value: values.Scalar, shown: str | None) -> None:
        self.state.last_answer = value
        store = node.store
        if store is not None and store.target == "attribute":
            self.set_attribute(store.key, value)
        elif store is not None:
            self.state.variables[store.key] = value
        label = node.label or (store.key if store else node.id)
        self.state.answers.append(Answer(node_id=node.id, label=label, value=value, shown=shown))

    def timed_out(self) -> None:
        node = self.flow.node(self.state.node_id or "")
        assert isinstance(node, AskNode)
        self.state.attempts = 0
        if node.timeout_seconds is None:
            self.end("expired")
        elif node.on_timeout is None:
            self.end("timeout")
        else:
            self.enter(node.on_timeout)

    # -- http -------------------------------------------------------------------------

    def call(self, node: HttpNode) -> None:
        self.state.status = "waiting_http"
        self.state.wait += 1
        self.http = HttpRequest(
            wait=self.state.wait,
            node_id=node.id,
            method=node.method,
            url=values.render(node.url, self.lookup, url=True),
            headers={k: values.render(v, self.lookup) for k, v in node.headers.items()},
            body=values.render_json(node.body, self.lookup),
            timeout_seconds=node.timeout_seconds,
        )

    def http_answered(self, event: HttpResult) -> None:
        node = self.flow.node(self.state.node_id or "")
        assert isinstance(node, HttpNode)
        if node.status_variable is not None:
            self.state.variables[node.status_variable] = event.status
        ok = event.error is None and event.status is not None and 200 <= event.status < 300
        if not ok:
            if node.on_error is None:
                self.end("http_failed")
            else:
                self.enter(node.on_error)
            return
        for name, path in node.response_map.items():
            self.state.variables[name] = values.storable(values.json_path(event.body, path))
        self.enter(node.next)

    # -- hand-off ---------------------------------------------------------------------

    def hand_off(self, node: HandoffNode) -> None:
        if node.message:
            self.say(node.message)
        lines = [values.render(node.note, self.lookup)]
        for answer in self.state.answers:
            lines.append(f"{answer.label}: {answer.shown or values.as_text(answer.value)}")
        self.emit("add_note", text="\n".join(lines)[:4096])
        if node.agent_id is not None:
            self.emit("assign", agent_id=str(node.agent_id))
        else:
            self.emit("assign", department_id=str(node.department_id))
        self.end("handoff")

    # -- values and conditions --------------------------------------------------------

    def lookup(self, name: str) -> Any:
        if name == "answer":
            return self.state.last_answer
        if name == "contact.name":
            return self.facts.contact_name
        if name.startswith("contact."):
            key = name.removeprefix("contact.")
            return self.state.attributes.get(key, self.facts.attributes.get(key))
        return self.state.variables.get(name)

    def holds(self, condition: Condition) -> bool:
        if isinstance(condition, AnswerIs):
            return values.compare(self.state.last_answer, condition.op, condition.value)
        if isinstance(condition, VariableIs):
            actual = self.state.variables.get(condition.name)
            return values.compare(actual, condition.op, condition.value)
        if isinstance(condition, AttributeIs):
            actual = self.lookup(f"contact.{condition.key}")
            return values.compare(actual, condition.op, condition.value)
        if isinstance(condition, HasTag):
            key = values.fold(condition.tag)
            carried = self.state.tags.get(key)
            if carried is None:
                carried = key in {values.fold(t) for t in self.facts.tags}
            return carried == condition.present
        assert isinstance(condition, BusinessHours)
        return self.facts.business_hours_open == condition.open

    # -- actions ----------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        action_id = uuid.uuid5(self.state.session_id, f"action:{self.state.emitted}")
        self.state.emitted += 1
        self.actions.append({"action_id": str(action_id), "type": kind, **fields})

    def say(self, text: str) -> None:
        rendered = values.render(text, self.lookup)[:4096]
        if rendered.strip():
            self.emit("send_text", text=rendered)

    def tag(self, tag: str, *, remove: bool) -> None:
        self.state.tags[values.fold(tag)] = not remove
        target = {"tag_id": tag} if _is_uuid(tag) else {"tag_name": tag}
        self.emit("remove_tag" if remove else "add_tag", **target)

    def set_attribute(self, key: str, value: values.Scalar) -> None:
        """The answer's own type goes to contacts (a number attribute takes a number)."""
        kept = value[: values.VALUE_MAX] if isinstance(value, str) else value
        self.state.attributes[key] = values.as_text(kept)
        self.emit("set_attribute", key=key, value=kept)

    def send(self, message: Message) -> None:
        if isinstance(message, TextMessage):
            self.say(message.text)
        elif isinstance(message, MediaMessage):
            media: dict[str, str] = (
                {"link": message.link}
                if message.link is not None
                else {"id": message.media_id or ""}
            )
            if message.caption:
                media["caption"] = values.render(message.caption, self.lookup)[:1024]
            if message.filename and message.media_type == "document":
                media["filename"] = message.filename
            self.emit("send_media", media_type=message.media_type, media=media)
        else:
            self.emit("send_interactive", interactive=self.interactive(message))

    def interactive(self, message: ButtonsMessage | ListMessage) -> dict[str, Any]:
        """WhatsApp's interactive object, cut to Meta's limits after placeholders are filled."""
        text = self.lookup_render
        is_list = isinstance(message, ListMessage)
        out: dict[str, Any] = {
            "type": "list" if is_list else "button",
            "body": {"text": text(message.body, LIST_BODY_MAX if is_list else BODY_MAX)},
        }
        if message.header:
            out["header"] = {"type": "text", "text": text(message.header, HEADER_MAX)}
        if message.footer:
            out["footer"] = {"text": text(message.footer, FOOTER_MAX)}
        if isinstance(message, ButtonsMessage):
            buttons = [
                {"type": "reply", "reply": {"id": b.id, "title": text(b.title, BUTTON_TITLE_MAX)}}
                for b in message.buttons
            ]
            out["action"] = {"buttons": buttons}
            return out
        sections = []
        for section in message.sections:
            rows = []
            for row in section.rows:
                one = {"id": row.id, "title": text(row.title, ROW_TITLE_MAX)}
                if row.description:
                    one["description"] = text(row.description, ROW_DESCRIPTION_MAX)
                rows.append(one)
            entry: dict[str, Any] = {"rows": rows}
            if section.title:
                entry["title"] = text(section.title, SECTION_TITLE_MAX)
            sections.append(entry)
        out["action"] = {"button": text(message.button, LIST_BUTTON_MAX), "sections": sections}
        return out

    def lookup_render(self, template: str, limit: int) -> str:
        return values.render(template, self.lookup)[:limit]


def _option(options: list[tuple[str, str]], event: Inbound) -> tuple[str, str] | None:
    """The option a reply picks: by button/row id, or typed as its title, id or number."""
    if event.reply is not None:
        return next(((i, t) for i, t in options if i == event.reply.id), None)
    if not event.text:
        return None
    said = values.fold(event.text)
    for position, (option_id, title) in enumerate(options, start=1):
        if said in (values.fold(title), values.fold(option_id), str(position)):
            return option_id, title
    return None


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
