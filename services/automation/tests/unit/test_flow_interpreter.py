"""The interpreter, node type by node type, without any I/O."""

from __future__ import annotations

import uuid
from typing import Any

from pytake_automation.flows.definition import FlowDefinition
from pytake_automation.flows.interpreter import DEFAULT_REPROMPT, new_session, step
from pytake_automation.flows.session import (
    Event,
    Facts,
    HttpResult,
    Inbound,
    Reply,
    SessionState,
    Start,
    StepResult,
    Stop,
    Timeout,
)

DEPT = uuid.UUID("7b0f4a53-1f7e-4c55-9a40-8b7cf4d6b001")
AGENT = uuid.UUID("7b0f4a53-1f7e-4c55-9a40-8b7cf4d6b002")
NO_FACTS = Facts()


def flow(*nodes: dict[str, Any], start: str | None = None, **extra: Any) -> FlowDefinition:
    first = start or str(nodes[0]["id"])
    return FlowDefinition.model_validate({"start": first, "nodes": list(nodes), **extra})


class Run:
    """A session driven event by event, keeping the last result."""

    def __init__(self, definition: FlowDefinition, facts: Facts = NO_FACTS) -> None:
        self.flow, self.facts = definition, facts
        self.state: SessionState = new_session(
            definition, session_id=uuid.uuid4(), flow_id=uuid.uuid4(), version=1
        )
        self.last = StepResult(state=self.state)

    def on(self, event: Event) -> StepResult:
        self.last = step(self.flow, self.state, event, self.facts)
        self.state = self.last.state
        return self.last

    def start(self) -> StepResult:
        return self.on(Start())

    def say(self, text: str) -> StepResult:
        return self.on(Inbound(text=text))

    def press(self, button_id: str, title: str = "") -> StepResult:
        return self.on(Inbound(text=title, reply=Reply(kind="button", id=button_id, title=title)))

    def kinds(self) -> list[str]:
        return [a["type"] for a in self.last.actions]


def text(value: str) -> dict[str, str]:
    return {"kind": "text", "text": value}


def ask(node_id: str, prompt: str, nxt: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "ask", "prompt": text(prompt), "next": nxt, **extra}


END = {"id": "end", "type": "end"}


# -- send -------------------------------------------------------------------------------


def test_send_text_media_buttons_and_list_in_order() -> None:
    run = Run(
        flow(
            {"id": "t", "type": "send", "message": text("Hi {{contact.name}}"), "next": "m"},
            {
                "id": "m",
                "type": "send",
                "message": {
                    "kind": "media",
                    "media_type": "document",
                    "link": "https://x.test/a.pdf",
                    "caption": "Menu",
                    "filename": "menu.pdf",
                },
                "next": "b",
            },
            {
                "id": "b",
                "type": "send",
                "message": {
                    "kind": "buttons",
                    "header": "Hello",
                    "body": "Choose",
                    "footer": "PyTake",
                    "buttons": [{"id": "y", "title": "Yes"}, {"id": "n", "title": "No"}],
                },
                "next": "l",
            },
            {
                "id": "l",
                "type": "send",
                "message": {
                    "kind": "list",
                    "body": "Pick",
                    "button": "Open",
                    "sections": [
                        {
                            "title": "S",
                            "rows": [{"id": "r1", "title": "One", "description": "first"}],
                        }
                    ],
                },
            },
        ),
        Facts(contact_name="Ana"),
    )
    result = run.start()
    assert run.kinds() == ["send_text", "send_media", "send_interactive", "send_interactive"]
    text_action, media, buttons, listing = result.actions
    assert text_action["text"] == "Hi Ana"
    assert media["media_type"] == "document"
    assert media["media"] == {
        "link": "https://x.test/a.pdf",
        "caption": "Menu",
        "filename": "menu.pdf",
    }
    assert buttons["interactive"] == {
        "type": "button",
        "header": {"type": "text", "text": "Hello"},
        "body": {"text": "Choose"},
        "footer": {"text": "PyTake"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "y", "title": "Yes"}},
                {"type": "reply", "reply": {"id": "n", "title": "No"}},
            ]
        },
    }
    assert listing["interactive"] == {
        "type": "list",
        "body": {"text": "Pick"},
        "action": {
            "button": "Open",
            "sections": [
                {"title": "S", "rows": [{"id": "r1", "title": "One", "description": "first"}]}
            ],
        },
    }
    # a send without next ends the flow
    assert result.state.status == "ended" and result.state.end_reason == "completed"
    assert len({a["action_id"] for a in result.actions}) == 4


def test_a_placeholder_filled_past_meta_limit_is_cut() -> None:
    run = Run(
        flow(
            {
                "id": "b",
                "type": "send",
                "message": {
                    "kind": "buttons",
                    "body": "?",
                    "buttons": [{"id": "a", "title": "{{n}}"}],
                },
            }
        )
    )
    run.state.variables["n"] = "x" * 40
    run.start()
    assert run.last.actions[0]["interactive"]["action"]["buttons"][0]["reply"]["title"] == "x" * 20


def test_the_same_step_gives_the_same_action_ids() -> None:
    definition = flow({"id": "a", "type": "send", "message": text("hello"), "next": "end"}, END)
    state = new_session(definition, session_id=uuid.uuid4(), flow_id=uuid.uuid4(), version=1)
    first = step(definition, state, Start(), NO_FACTS)
    again = step(definition, state, Start(), NO_FACTS)
    assert first.actions == again.actions
    assert state.status == "running"  # the input state is not modified


# -- ask --------------------------------------------------------------------------------


def test_ask_waits_then_stores_a_variable_and_moves_on() -> None:
    run = Run(
        flow(
            ask("name", "Your name?", "bye", store={"target": "variable", "key": "name"}),
            {"id": "bye", "type": "end", "message": "Thanks {{name}}"},
        )
    )
    result = run.start()
    assert run.kinds() == ["send_text"] and result.state.status == "waiting_reply"
    assert [t.after_seconds for t in result.timers] == [86400]
    result = run.say("  Ana Souza ")
    assert result.state.variables["name"] == "Ana Souza"
    assert [a["text"] for a in result.actions] == ["Thanks Ana Souza"]
    assert result.state.status == "ended"


def test_ask_stores_into_a_contact_attribute() -> None:
    run = Run(
        flow(
            ask(
                "mail",
                "E-mail?",
                "end",
                validate={"kind": "email"},
                store={"target": "attribute", "key": "email"},
            ),
            END,
        )
    )
    run.start()
    result = run.say("Ana@Example.COM")
    assert result.actions[0]["type"] == "set_attribute"
    assert result.actions[0]["key"] == "email" and result.actions[0]["value"] == "ana@example.com"
    assert result.state.attributes == {"email": "ana@example.com"}
    # a number goes to contacts as a number (a number attribute refuses text)
    run = Run(
        flow(
            ask(
                "n",
                "Age?",
                "end",
                validate={"kind": "number"},
                store={"target": "attribute", "key": "age"},
            ),
            END,
        )
    )
    run.start()
    result = run.say("42")
    assert result.actions[0]["value"] == 42 and result.state.attributes == {"age": "42"}


def test_each_validation_kind() -> None:
    cases: list[tuple[dict[str, Any], str, Any]] = [
        ({"kind": "number", "minimum": 1, "maximum": 10}, "7", 7),
        ({"kind": "number"}, "12,5", 12.5),
        ({"kind": "email"}, "x@y.io", "x@y.io"),
        ({"kind": "date"}, "31/12/2026", "2026-12-31"),
        ({"kind": "date"}, "2026-02-01", "2026-02-01"),
        ({"kind": "text", "min_length": 2}, "ok", "ok"),
        (
            {
                "kind": "option",
                "options": [{"id": "a", "title": "Ágil"}, {"id": "b", "title": "Barato"}],
            },
            "agil",
            "a",
        ),
        (
            {"kind": "option", "options": [{"id": "a", "title": "A"}, {"id": "b", "title": "B"}]},
            "2",
            "b",
        ),
    ]
    for rule, said, stored in cases:
        run = Run(
            flow(ask("q", "?", "end", validate=rule, store={"target": "variable", "key": "v"}), END)
        )
        run.start()
        assert run.say(said).state.variables == {"v": stored}, (rule, said)

    refused: list[tuple[dict[str, Any], str]] = [
        ({"kind": "number", "maximum": 10}, "11"),
        ({"kind": "number"}, "eleven"),
        ({"kind": "email"}, "not-an-email"),
        ({"kind": "date"}, "31/02/2026"),
        ({"kind": "text", "max_length": 3}, "too long"),
        ({"kind": "option", "options": [{"id": "a", "title": "A"}]}, "c"),
    ]
    for rule, said in refused:
        run = Run(flow(ask("q", "?", "end", validate=rule), END))
        run.start()
        result = run.say(said)
        assert result.state.status == "waiting_reply" and result.state.attempts == 1, (rule, said)


def test_option_from_the_prompts_buttons_by_reply_id() -> None:
    prompt = {
        "kind": "buttons",
        "body": "Sales or support?",
        "buttons": [{"id": "sales", "title": "Sales"}, {"id": "support", "title": "Support"}],
    }
    run = Run(
        flow(
            {
                "id": "q",
                "type": "ask",
                "prompt": prompt,
                "validate": {"kind": "option"},
                "next": "end",
            },
            END,
        )
    )
    run.start()
    assert run.last.actions[0]["type"] == "send_interactive"
    result = run.press("support", "Support")
    assert result.state.last_answer == "support"
    assert result.state.answers[0].shown == "Support"
    # a reply with an id the prompt did not offer is not an answer
    run = Run(run.flow)
    run.start()
    assert run.press("other", "Other").state.attempts == 1


def test_reprompt_then_give_up_to_on_invalid() -> None:
    run = Run(
        flow(
            ask(
                "age",
                "Age?",
                "end",
                validate={"kind": "number"},
                reprompt="A number, please",
                max_attempts=2,
                on_invalid="human",
            ),
            {"id": "human", "type": "handoff", "department_id": str(DEPT)},
            END,
        )
    )
    first = run.start()
    result = run.say("old")
    assert [a["text"] for a in result.actions] == ["A number, please", "Age?"]
    assert result.state.wait == first.state.wait + 1  # the earlier timer is stale now
    result = run.say("very old")
    assert run.kinds() == ["add_note", "assign"]
    assert result.state.end_reason == "handoff"


def test_invalid_answers_without_on_invalid_end_the_session() -> None:
    run = Run(flow(ask("q", "?", "end", validate={"kind": "email"}, max_attempts=1), END))
    run.start()
    result = run.say("nope")
    assert result.state.end_reason == "invalid_answer" and result.actions == []


def test_default_reprompt() -> None:
    run = Run(flow(ask("q", "?", "end", validate={"kind": "email"}), END))
    run.start()
    assert run.say("nope").actions[0]["text"] == DEFAULT_REPROMPT


def test_no_reply_within_the_timeout_branches() -> None:
    run = Run(
        flow(
            ask("q", "Still there?", "end", timeout_seconds=300, on_timeout="nudge"),
            {"id": "nudge", "type": "end", "message": "We will be here when you come back"},
            END,
        )
    )
    result = run.start()
    assert [(t.wait, t.after_seconds) for t in result.timers] == [(1, 300)]
    # a timer of an earlier wait does nothing
    assert run.on(Timeout(wait=0)).actions == [] and run.state.status == "waiting_reply"
    result = run.on(Timeout(wait=1))
    assert [a["text"] for a in result.actions] == ["We will be here when you come back"]
    assert result.state.status == "ended"


def test_timeout_without_a_branch_ends_and_idle_timeout_expires() -> None:
    run = Run(flow(ask("q", "?", "end", timeout_seconds=60), END))
    run.start()
    assert run.on(Timeout(wait=1)).state.end_reason == "timeout"
    run = Run(flow(ask("q", "?", "end"), END, idle_timeout_seconds=600))
    assert run.start().timers[0].after_seconds == 600
    assert run.on(Timeout(wait=1)).state.end_reason == "expired"


def test_a_reply_after_the_timeout_is_ignored() -> None:
    run = Run(flow(ask("q", "?", "end", timeout_seconds=60), END))
    run.start()
    run.on(Timeout(wait=1))
    assert run.say("late").actions == [] and run.state.end_reason == "timeout"


# -- branch -----------------------------------------------------------------------------


def _branch(when: dict[str, Any]) -> FlowDefinition:
    return flow(
        {"id": "b", "type": "branch", "cases": [{"when": when, "next": "yes"}], "default": "no"},
        {"id": "yes", "type": "end", "message": "yes"},
        {"id": "no", "type": "end", "message": "no"},
    )


def _taken(definition: FlowDefinition, facts: Facts = NO_FACTS, **variables: Any) -> str:
    run = Run(definition, facts)
    run.state.variables.update(variables)
    return str(run.start().actions[0]["text"])


def test_branch_on_attribute_tag_business_hours_and_variable() -> None:
    vip = Facts(attributes={"plan": "Gold"}, tags=frozenset({"VIP"}), business_hours_open=False)
    assert _taken(_branch({"kind": "attribute", "key": "plan", "value": "gold"}), vip) == "yes"
    assert _taken(_branch({"kind": "attribute", "key": "plan", "op": "exists"}), NO_FACTS) == "no"
    assert _taken(_branch({"kind": "tag", "tag": "vip"}), vip) == "yes"
    assert _taken(_branch({"kind": "tag", "tag": "vip", "present": False}), vip) == "no"
    assert _taken(_branch({"kind": "business_hours", "open": False}), vip) == "yes"
    assert _taken(_branch({"kind": "business_hours"}), vip) == "no"
    assert (
        _taken(_branch({"kind": "variable", "name": "total", "op": "gt", "value": 100}), total=150)
        == "yes"
    )
    assert (
        _taken(
            _branch(
                {"kind": "variable", "name": "city", "op": "in", "value": ["São Paulo", "Rio"]}
            ),
            city="sao paulo",
        )
        == "yes"
    )
    assert (
        _taken(
            _branch({"kind": "variable", "name": "note", "op": "contains", "value": "URGENTE"}),
            note="é urgente!",
        )
        == "yes"
    )


def test_branch_on_the_answer() -> None:
    prompt = {
        "kind": "buttons",
        "body": "?",
        "buttons": [{"id": "buy", "title": "Buy"}, {"id": "help", "title": "Help"}],
    }
    definition = flow(
        {"id": "q", "type": "ask", "prompt": prompt, "validate": {"kind": "option"}, "next": "b"},
        {
            "id": "b",
            "type": "branch",
            "cases": [{"when": {"kind": "answer", "value": "buy"}, "next": "sales"}],
            "default": "help",
        },
        {"id": "sales", "type": "end", "message": "to sales"},
        {"id": "help", "type": "end", "message": "to help"},
    )
    run = Run(definition)
    run.start()
    assert run.press("buy", "Buy").actions[0]["text"] == "to sales"
    run = Run(definition)
    run.start()
    assert run.say("help").actions[0]["text"] == "to help"


def test_a_tag_set_in_the_session_counts_before_the_replica_knows() -> None:
    definition = flow(
        {"id": "t", "type": "set_tag", "tag": "lead", "next": "b"},
        {
            "id": "b",
            "type": "branch",
            "cases": [{"when": {"kind": "tag", "tag": "Lead"}, "next": "yes"}],
            "default": "no",
        },
        {"id": "yes", "type": "end", "message": "yes"},
        {"id": "no", "type": "end", "message": "no"},
    )
    run = Run(definition)
    result = run.start()
    assert result.actions[0]["type"] == "add_tag" and result.actions[0]["tag_name"] == "lead"
    assert result.actions[1]["text"] == "yes"


# -- set tag / attribute ---------------------------------------------------------------


def test_set_and_remove_tags_and_attributes() -> None:
    tag_id = "0d4c7a39-2f3b-4b1e-9d5c-3b1f2d8e9a10"
    run = Run(
        flow(
            {"id": "a", "type": "set_tag", "tag": tag_id, "next": "r"},
            {"id": "r", "type": "set_tag", "tag": "cold", "remove": True, "next": "s"},
            {
                "id": "s",
                "type": "set_attribute",
                "key": "source",
                "value": "bot:{{campaign}}",
                "next": "end",
            },
            END,
        )
    )
    run.state.variables["campaign"] = "xmas"
    result = run.start()
    assert [{k: v for k, v in a.items() if k != "action_id"} for a in result.actions] == [
        {"type": "add_tag", "tag_id": tag_id},
        {"type": "remove_tag", "tag_name": "cold"},
        {"type": "set_attribute", "key": "source", "value": "bot:xmas"},
    ]
    assert result.state.status == "ended"


# -- http -------------------------------------------------------------------------------


def _http_flow(**extra: Any) -> FlowDefinition:
    node = {
        "id": "h",
        "type": "http",
        "method": "POST",
        "url": "https://api.example.com/orders/{{order}}?q={{q}}",
        "headers": {"X-Order": "{{order}}"},
        "body": {"order": "{{order}}", "fixed": 1},
        "timeout_seconds": 3,
        "map": {"state": "$.order.status", "first": "$.items[0].name", "missing": "$.nope"},
        "status_variable": "code",
        "next": "said",
        **extra,
    }
    return flow(
        node,
        {"id": "said", "type": "end", "message": "Order is {{state}} ({{first}})"},
        {"id": "oops", "type": "end", "message": "Cannot check now"},
    )


def test_http_request_is_rendered_and_the_answer_mapped() -> None:
    run = Run(_http_flow())
    run.state.variables.update(order="A/1", q="a b")
    result = run.start()
    assert result.actions == [] and result.state.status == "waiting_http"
    request = result.http
    assert request is not None
    assert request.url == "https://api.example.com/orders/A%2F1?q=a%20b"
    assert request.headers == {"X-Order": "A/1"} and request.body == {"order": "A/1", "fixed": 1}
    assert request.method == "POST" and request.timeout_seconds == 3
    body = {"order": {"status": "shipped"}, "items": [{"name": "Lamp"}]}
    # an answer to an earlier wait does nothing
    assert run.on(HttpResult(wait=request.wait - 1, status=200, body=body)).actions == []
    result = run.on(HttpResult(wait=request.wait, status=200, body=body))
    assert (
        result.state.variables["state"] == "shipped" and result.state.variables["missing"] is None
    )
    assert result.state.variables["code"] == 200
    assert result.actions[0]["text"] == "Order is shipped (Lamp)"


def test_http_failure_goes_to_on_error_or_ends() -> None:
    run = Run(_http_flow(on_error="oops"))
    request = run.start().http
    assert request is not None
    result = run.on(HttpResult(wait=request.wait, status=503))
    assert result.actions[0]["text"] == "Cannot check now" and result.state.variables["code"] == 503
    run = Run(_http_flow())
    request = run.start().http
    assert request is not None
    result = run.on(HttpResult(wait=request.wait, error="host refused"))
    assert result.state.end_reason == "http_failed" and result.actions == []


# -- hand-off and end ------------------------------------------------------------------


def test_handoff_notes_the_answers_then_assigns() -> None:
    prompt = {
        "kind": "buttons",
        "body": "Topic?",
        "buttons": [{"id": "billing", "title": "Billing"}],
    }
    run = Run(
        flow(
            ask(
                "name", "Name?", "topic", store={"target": "variable", "key": "name"}, label="Name"
            ),
            {
                "id": "topic",
                "type": "ask",
                "prompt": prompt,
                "validate": {"kind": "option"},
                "label": "Topic",
                "next": "h",
            },
            {
                "id": "h",
                "type": "handoff",
                "agent_id": str(AGENT),
                "message": "An agent will answer, {{name}}",
                "note": "Bot summary",
            },
        )
    )
    run.start()
    run.say("Ana")
    result = run.press("billing", "Billing")
    assert [{k: v for k, v in a.items() if k != "action_id"} for a in result.actions] == [
        {"type": "send_text", "text": "An agent will answer, Ana"},
        {"type": "add_note", "text": "Bot summary\nName: Ana\nTopic: Billing"},
        {"type": "assign", "agent_id": str(AGENT)},
    ]
    assert result.state.status == "ended" and result.state.end_reason == "handoff"


def test_handoff_to_a_department() -> None:
    run = Run(flow({"id": "h", "type": "handoff", "department_id": str(DEPT)}))
    result = run.start()
    assert result.actions[-1]["department_id"] == str(DEPT)


def test_end_says_goodbye_and_may_resolve() -> None:
    run = Run(flow({"id": "e", "type": "end", "message": "Bye", "resolve": True}))
    result = run.start()
    assert [a["type"] for a in result.actions] == ["send_text", "set_status"]
    assert result.actions[1]["status"] == "resolved"
    # an ended session ignores everything
    assert run.say("hello?").actions == [] and run.on(Start()).actions == []


# -- stopping ---------------------------------------------------------------------------


def test_a_stop_word_ends_the_session() -> None:
    run = Run(
        flow(ask("q", "?", "end"), END, stop_words=["Parar", "stop"], stop_message="Ok, stopped")
    )
    run.start()
    result = run.say("  PARAR! ")
    assert [a["text"] for a in result.actions] == ["Ok, stopped"]
    assert result.state.end_reason == "stop_word"
    run = Run(run.flow)
    run.start()
    assert run.say("please do not stop").state.end_reason == "completed"  # an answer


def test_an_agent_stops_the_session() -> None:
    run = Run(flow(ask("q", "?", "end"), END))
    run.start()
    result = run.on(Stop(reason="agent_replied"))
    assert result.actions == [] and result.state.end_reason == "agent_replied"


def test_a_loop_without_a_wait_is_cut() -> None:
    run = Run(
        flow(
            {"id": "a", "type": "set_attribute", "key": "k", "value": "v", "next": "b"},
            {
                "id": "b",
                "type": "branch",
                "cases": [{"when": {"kind": "business_hours"}, "next": "a"}],
                "default": "a",
            },
        )
    )
    result = run.start()
    assert result.state.end_reason == "loop_limit" and len(result.actions) == 25
