"""A flow's test run: sample inputs in, a transcript out; HTTP answers are played, not made."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pytake_automation.flows.definition import FlowDefinition
from pytake_automation.flows.dry_run import NOT_CALLED, FlowTest, run


def lookup_flow() -> FlowDefinition:
    return FlowDefinition.model_validate(
        {
            "start": "call",
            "nodes": [
                {
                    "id": "call",
                    "type": "http",
                    "url": "https://api.example.com/status",
                    "map": {"state": "$.state"},
                    "next": "ok",
                    "on_error": "down",
                },
                {"id": "ok", "type": "end", "message": "It is {{state}}"},
                {"id": "down", "type": "end", "message": "Unavailable"},
            ],
        }
    )


def sample(inputs: list[dict[str, Any]]) -> FlowTest:
    return FlowTest.model_validate({"inputs": inputs})


def test_a_sample_http_answer_is_played() -> None:
    t = run(lookup_flow(), sample([{"http": {"status": 200, "body": {"state": "open"}}}]), None)
    assert [turn.event for turn in t.turns] == ["start", "http"]
    assert t.turns[0].status == "waiting_http"
    assert t.turns[0].http_request is not None
    assert t.turns[0].http_request["url"] == "https://api.example.com/status"
    assert t.turns[1].actions == [{"type": "send_text", "text": "It is open"}]
    assert t.variables == {"state": "open"} and t.end_reason == "completed"


def test_without_a_sample_the_call_fails_or_the_transcript_stops_at_it() -> None:
    failed = run(lookup_flow(), sample([{"text": "hello"}]), None)
    assert failed.turns[1].actions == [{"type": "send_text", "text": "Unavailable"}]
    assert failed.unused_inputs == 1  # the text was never needed
    waiting = run(lookup_flow(), sample([]), None)
    assert waiting.status == "waiting_http" and len(waiting.turns) == 1
    assert NOT_CALLED.startswith("not called")


def test_inputs_after_the_end_are_counted_and_stray_ones_marked() -> None:
    flow = FlowDefinition.model_validate(
        {
            "start": "q",
            "nodes": [
                {"id": "q", "type": "ask", "prompt": {"kind": "text", "text": "?"}, "next": "e"},
                {"id": "e", "type": "end"},
            ],
        }
    )
    t = run(flow, sample([{"http": {"status": 200}}, {"text": "a"}, {"text": "b"}]), 3)
    assert [(turn.event, turn.ignored) for turn in t.turns] == [
        ("start", False),
        ("http", True),
        ("text", False),
    ]
    assert t.version == 3 and t.unused_inputs == 1 and t.answers[0]["value"] == "a"


def test_one_kind_of_input_at_a_time() -> None:
    with pytest.raises(ValidationError):
        sample([{"text": "a", "timeout": True}])
    with pytest.raises(ValidationError):
        sample([{}])
