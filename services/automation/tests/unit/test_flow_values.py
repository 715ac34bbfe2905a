"""Placeholders, JSON paths and answer parsing: no expression language anywhere."""

from __future__ import annotations

from typing import Any

from pytake_automation.flows import values


def test_placeholders_name_one_value_and_nothing_runs() -> None:
    known = {"name": "Ana", "n": 2.0, "flag": True}
    assert (
        values.render("Hi {{ name }}, {{n}} {{flag}} {{unknown}}!", known.get) == "Hi Ana, 2 true !"
    )
    assert values.render("{{__import__('os')}}", known.get) == "{{__import__('os')}}"
    assert values.render("/x/{{name}}", {"name": "a/b c"}.get, url=True) == "/x/a%2Fb%20c"
    body = values.render_json({"{{name}}": ["{{name}}", 1, None]}, known.get)
    assert body == {"{{name}}": ["Ana", 1, None]}


def test_json_paths() -> None:
    doc: dict[str, Any] = {"a": {"b": [{"c": 1}, {"c": "two"}]}, "top": "t"}
    assert values.json_path(doc, "$.a.b[1].c") == "two"
    assert values.json_path(doc, "a.b[0].c") == 1
    assert values.json_path(doc, "$.top") == "t"
    assert values.json_path(doc, "$") == doc
    for missing in ("$.a.x", "$.a.b[5].c", "$.top.deeper", "$.a..b", "$.a.b[x]"):
        assert values.json_path(doc, missing) is None, missing
    assert values.json_path(["x"], "$[0]") == "x"


def test_storable_bounds_what_a_variable_keeps() -> None:
    assert values.storable({"k": [1, 2]}) == '{"k":[1,2]}'
    assert values.storable("x" * 5000) == "x" * values.VALUE_MAX
    assert values.storable(3) == 3 and values.storable(None) is None


def test_numbers_in_either_decimal_spelling() -> None:
    assert values.parse_number("1.234,5") == 1234.5
    assert values.parse_number("1,234.5") == 1234.5
    assert values.parse_number("12,5") == 12.5
    assert values.parse_number("-3") == -3
    for bad in ("nan", "inf", "1e999", "", "abc"):
        assert values.parse_number(bad) is None, bad


def test_fold_and_compare() -> None:
    assert values.fold("  ÁGUA   Fria ") == "agua fria"
    assert values.bare("Parar!!") == "parar"
    assert values.compare("10", "gt", 9) and not values.compare("x", "gt", 1)
    assert values.compare("Sim", "in", ["sim", "yes"])
    assert values.compare(None, "not_exists", None) and values.compare("", "not_exists", None)
    assert values.compare("a", "not_equals", "b")
