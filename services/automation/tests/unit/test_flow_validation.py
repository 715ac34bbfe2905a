"""Publish-time checks: the graph is connected and interactive messages fit Meta's limits."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pytake_automation.flows.definition import FlowDefinition
from pytake_automation.flows.validation import FlowInvalid, check_publishable

DEPT = "7b0f4a53-1f7e-4c55-9a40-8b7cf4d6b001"


def flow(*nodes: dict[str, Any], start: str = "a", **extra: Any) -> FlowDefinition:
    return FlowDefinition.model_validate({"start": start, "nodes": list(nodes), **extra})


def codes(error: FlowInvalid) -> list[tuple[str | None, str, str]]:
    return [(p.node_id, p.field, p.code) for p in error.problems]


def buttons(count: int, title: str = "Yes") -> dict[str, Any]:
    return {
        "kind": "buttons",
        "body": "Pick one",
        "buttons": [{"id": f"b{i}", "title": title} for i in range(count)],
    }


def test_a_connected_flow_with_three_buttons_publishes() -> None:
    check_publishable(
        flow(
            {
                "id": "a",
                "type": "ask",
                "prompt": buttons(3),
                "validate": {"kind": "option"},
                "next": "h",
            },
            {"id": "h", "type": "handoff", "department_id": DEPT},
        )
    )


def test_dangling_edges_and_unreachable_nodes_name_their_node() -> None:
    definition = flow(
        {"id": "a", "type": "send", "message": {"kind": "text", "text": "hi"}, "next": "nowhere"},
        {
            "id": "b",
            "type": "branch",
            "cases": [{"when": {"kind": "answer", "value": "x"}, "next": "ghost"}],
            "default": "a",
        },
        {"id": "c", "type": "end"},
    )
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(definition)
    assert codes(caught.value) == [
        ("a", "next", "dangling_edge"),
        ("b", "cases[0].next", "dangling_edge"),
        ("b", "id", "unreachable_node"),
        ("c", "id", "unreachable_node"),
    ]
    body = caught.value.extra["problems"]
    assert body[0]["node_id"] == "a" and "nowhere" in body[0]["detail"]
    assert caught.value.status == 422 and caught.value.code == "flow_invalid"
    assert caught.value.detail.startswith("node 'a': next leads to 'nowhere'")


def test_unknown_start_and_duplicate_ids() -> None:
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(flow({"id": "x", "type": "end"}, {"id": "x", "type": "end"}, start="s"))
    found = codes(caught.value)
    assert ("x", "id", "duplicate_node") in found
    assert (None, "start", "unknown_start") in found


def test_button_limits() -> None:
    long_title = "A title longer than twenty"
    message = buttons(4, title=long_title) | {"footer": "f" * 61, "body": "b" * 1025}
    definition = flow({"id": "a", "type": "send", "message": message})
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(definition)
    found = {(field, code) for _, field, code in codes(caught.value)}
    assert ("message.buttons", "meta_limit") in found
    assert ("message.body", "meta_limit") in found
    assert ("message.footer", "meta_limit") in found
    assert ("message.buttons[3].title", "meta_limit") in found


def test_exactly_at_the_button_limits_is_fine() -> None:
    message = buttons(3, title="t" * 20) | {"footer": "f" * 60, "body": "b" * 1024}
    check_publishable(flow({"id": "a", "type": "send", "message": message}))


def _list(sections: list[dict[str, Any]], button: str = "Options") -> dict[str, Any]:
    return {"kind": "list", "body": "Choose", "button": button, "sections": sections}


def test_list_limits() -> None:
    rows = [{"id": f"r{i}", "title": f"Row {i}"} for i in range(11)]
    rows[0] = {"id": "r0", "title": "r" * 25, "description": "d" * 73}
    message = _list([{"title": "One", "rows": rows}], button="b" * 21)
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(flow({"id": "a", "type": "send", "message": message}))
    found = {(field, code) for _, field, code in codes(caught.value)}
    assert found == {
        ("message.button", "meta_limit"),
        ("message.sections", "meta_limit"),
        ("message.sections[0].rows[0].title", "meta_limit"),
        ("message.sections[0].rows[0].description", "meta_limit"),
    }


def test_list_section_count_and_limits_at_the_edge() -> None:
    eleven = [{"title": f"S{i}", "rows": [{"id": f"r{i}", "title": "x"}]} for i in range(11)]
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(flow({"id": "a", "type": "send", "message": _list(eleven)}))
    assert {(f, c) for _, f, c in codes(caught.value)} == {("message.sections", "meta_limit")}
    ten_rows = [
        {"title": "S" * 24, "rows": [{"id": f"r{i}", "title": "t" * 24, "description": "d" * 72}]}
        for i in range(10)
    ]
    check_publishable(flow({"id": "a", "type": "send", "message": _list(ten_rows, "b" * 20)}))


def test_duplicate_button_ids_are_refused() -> None:
    message = {
        "kind": "buttons",
        "body": "?",
        "buttons": [{"id": "x", "title": "A"}, {"id": "x", "title": "B"}],
    }
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(flow({"id": "a", "type": "send", "message": message}))
    assert codes(caught.value) == [("a", "message.buttons", "duplicate_option")]


def test_option_question_needs_options() -> None:
    ask = {
        "id": "a",
        "type": "ask",
        "prompt": {"kind": "text", "text": "Yes or no?"},
        "validate": {"kind": "option"},
        "next": "e",
    }
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(flow(ask, {"id": "e", "type": "end"}))
    assert codes(caught.value) == [("a", "validate.options", "no_options")]


def test_http_hosts_must_be_allow_listed_and_literal() -> None:
    def http(url: str) -> FlowDefinition:
        return flow(
            {"id": "a", "type": "http", "url": url, "next": "e"}, {"id": "e", "type": "end"}
        )

    check_publishable(
        http("https://api.example.com/orders/{{order}}"), allowed_hosts=["API.example.com"]
    )
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(http("https://other.example.com/x"), allowed_hosts=["api.example.com"])
    assert codes(caught.value) == [("a", "url", "host_not_allowed")]
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(http("https://{{host}}/x"), allowed_hosts=["api.example.com"])
    assert codes(caught.value) == [("a", "url", "templated_host")]
    with pytest.raises(FlowInvalid) as caught:
        check_publishable(http("https://u:p@api.example.com/x"), allowed_hosts=["api.example.com"])
    assert codes(caught.value) == [("a", "url", "invalid_url")]


def test_structure_is_checked_when_a_draft_is_parsed() -> None:
    with pytest.raises(ValidationError):
        flow({"id": "a", "type": "teleport"})
    with pytest.raises(ValidationError):
        flow({"id": "h", "type": "handoff"})  # neither department nor agent
    with pytest.raises(ValidationError):
        flow({"id": "m", "type": "send", "message": {"kind": "media", "media_type": "image"}})
    with pytest.raises(ValidationError):
        flow({"id": "a", "type": "end", "code": "print(1)"})  # unknown fields are refused
