"""Compiled rules against trigger contexts (pure: no database)."""

import uuid
from datetime import UTC, datetime

from pytake_automation.context import ContactView, ConversationView, TriggerContext
from pytake_automation.matching import RuleSet, compile_rule, select_rules
from pytake_automation.rule_model import RuleBody

ORG = uuid.uuid4()


def rule(name="r", position=0, **body):
    body.setdefault("trigger", {"type": "message_received"})
    body.setdefault("actions", [{"type": "add_note", "text": name}])
    row = RuleBody(name=name, position=position, **body).model_dump(mode="json")
    return compile_rule({**row, "id": uuid.uuid4()})


def ctx(text="hello", **extra):
    conv = ConversationView(
        uuid.uuid4(), ORG, uuid.uuid4(), uuid.uuid4(), "open", "normal", None, None, 1, False
    )
    values = {
        "trigger": "message_received",
        "trigger_key": "k",
        "at": datetime.now(UTC),
        "conversation": conv,
        "contact": ContactView(conv.contact_id),
        "business_open": True,
        "text": text,
        **extra,
    }
    return TriggerContext(**values)


def test_text_any_of_words_and_phrases():
    r = rule(conditions=[{"type": "text_contains", "words": ["boleto", "segunda via"]}])
    assert select_rules([r], ctx("Preciso da SEGUNDA-VIA do boleto"))
    assert select_rules([r], ctx("segunda  via"))
    assert not select_rules([r], ctx("segundavia"))
    assert not select_rules([r], ctx(None))


def test_match_any_and_all_and_no_conditions():
    words = {"type": "text_contains", "words": ["oi"]}
    closed = {"type": "business_hours", "state": "closed"}
    assert not select_rules([rule(conditions=[words, closed])], ctx("oi"))
    assert select_rules([rule(match="any", conditions=[words, closed])], ctx("oi"))
    assert select_rules([rule()], ctx("anything"))


def test_stop_processing_and_order():
    a, b, c = rule("a"), rule("b", stop_processing=True), rule("c")
    assert [r.name for r in select_rules([a, b, c], ctx())] == ["a", "b"]


def test_loop_protection_and_timer_ownership():
    r = rule(trigger={"type": "status_changed"})
    mine = ctx(trigger="status_changed", actor_type="automation", actor_id=r.id)
    assert not select_rules([r], mine)
    assert select_rules(
        [r], ctx(trigger="status_changed", actor_type="automation", actor_id=uuid.uuid4())
    )
    t = rule(trigger={"type": "no_agent_reply", "minutes": 5})
    assert not select_rules([t], ctx(trigger="no_agent_reply", timer_rule_id=uuid.uuid4()))
    assert select_rules([t], ctx(trigger="no_agent_reply", timer_rule_id=t.id))


def test_status_filter():
    r = rule(trigger={"type": "status_changed", "statuses": ["resolved"]})
    assert select_rules([r], ctx(trigger="status_changed", new_status="resolved"))
    assert not select_rules([r], ctx(trigger="status_changed", new_status="pending"))


def test_attribute_comparisons():
    c = ctx(contact=ContactView(uuid.uuid4(), attributes={"plan": "Gold", "score": 7, "vip": True}))
    assert select_rules(
        [rule(conditions=[{"type": "contact_attribute", "key": "plan", "value": "gold"}])], c
    )
    assert select_rules(
        [rule(conditions=[{"type": "contact_attribute", "key": "score", "value": 7}])], c
    )
    assert not select_rules(
        [rule(conditions=[{"type": "contact_attribute", "key": "vip", "value": 1}])], c
    )
    assert select_rules(
        [rule(conditions=[{"type": "contact_attribute", "key": "x", "op": "not_exists"}])], c
    )
    assert select_rules(
        [
            rule(
                conditions=[
                    {
                        "type": "contact_attribute",
                        "key": "plan",
                        "op": "not_equals",
                        "value": "free",
                    }
                ]
            )
        ],
        c,
    )


def test_rule_set_groups_by_trigger():
    s = RuleSet.of(
        3,
        [
            {
                **RuleBody(
                    name="o",
                    trigger={"type": "conversation_opened"},
                    actions=[{"type": "add_note", "text": "x"}],
                ).model_dump(mode="json"),
                "id": uuid.uuid4(),
            }
        ],
    )
    assert s.version == 3 and list(s.by_trigger) == ["conversation_opened"]
    assert s.timer_rules("unassigned") == ()
