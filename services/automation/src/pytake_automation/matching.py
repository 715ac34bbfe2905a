"""Rules compiled for matching: closures built once per rule set, evaluated per trigger.

A rule set (one organization's enabled rules, in order) is compiled when it is loaded into
the cache: each condition becomes a small predicate with its constants prepared (phrases
normalised, id lists turned into frozensets), and rules are grouped by trigger. Matching a
trigger then costs, per candidate rule, a few attribute reads and set lookups; the message
text is normalised once per trigger, only if some candidate has a text condition.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytake_automation.context import TriggerContext
from pytake_automation.rule_model import TIMER_TRIGGERS
from pytake_automation.text_match import contains_any, normalize, phrase_key


class Subject:
    """A trigger as conditions read it; the normalised text is computed on first use."""

    __slots__ = ("_text", "ctx")

    def __init__(self, ctx: TriggerContext) -> None:
        self.ctx = ctx
        self._text: str | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = normalize(self.ctx.text or "")
        return self._text


Predicate = Callable[[Subject], bool]


def _text_contains(c: Mapping[str, Any]) -> Predicate:
    keys = tuple(k for k in (phrase_key(w) for w in c["words"]) if k is not None)
    return lambda s: s.ctx.text is not None and contains_any(s.text, keys)


def _contact_tag(c: Mapping[str, Any]) -> Predicate:
    tag, present = uuid.UUID(str(c["tag_id"])), bool(c.get("present", True))
    return lambda s: (tag in s.ctx.contact.tag_ids) is present


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(a == b)


def _contact_attribute(c: Mapping[str, Any]) -> Predicate:
    key, op, value = c["key"], c.get("op", "equals"), c.get("value")
    if op == "exists":
        return lambda s: s.ctx.contact.attributes.get(key) is not None
    if op == "not_exists":
        return lambda s: s.ctx.contact.attributes.get(key) is None
    if op == "equals":
        return lambda s: _same(s.ctx.contact.attributes.get(key), value)
    return lambda s: not _same(s.ctx.contact.attributes.get(key), value)


def _business_hours(c: Mapping[str, Any]) -> Predicate:
    want_open = c["state"] == "open"
    return lambda s: s.ctx.business_open is want_open


def _in(attribute: str) -> Callable[[Mapping[str, Any]], Predicate]:
    def build(c: Mapping[str, Any]) -> Predicate:
        allowed = frozenset(c["any_of"])
        return lambda s: getattr(s.ctx.conversation, attribute) in allowed

    return build


def _ids_in(attribute: str) -> Callable[[Mapping[str, Any]], Predicate]:
    def build(c: Mapping[str, Any]) -> Predicate:
        allowed: frozenset[uuid.UUID | None] = frozenset(uuid.UUID(str(i)) for i in c["any_of"])
        if c.get("none"):
            allowed = allowed | {None}
        return lambda s: getattr(s.ctx.conversation, attribute) in allowed

    return build


def _first_message(c: Mapping[str, Any]) -> Predicate:
    value = bool(c.get("value", True))
    return lambda s: s.ctx.first_message is value


BUILDERS: dict[str, Callable[[Mapping[str, Any]], Predicate]] = {
    "text_contains": _text_contains,
    "contact_tag": _contact_tag,
    "contact_attribute": _contact_attribute,
    "business_hours": _business_hours,
    "conversation_status": _in("status"),
    "conversation_priority": _in("priority"),
    "conversation_department": _ids_in("department_id"),
    "conversation_number": _ids_in("number_id"),
    "first_message": _first_message,
}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    id: uuid.UUID
    name: str
    trigger: str
    minutes: int | None
    statuses: frozenset[str]
    match_all: bool
    predicates: tuple[Predicate, ...]
    actions: tuple[dict[str, Any], ...]
    stop_processing: bool

    def matches(self, subject: Subject) -> bool:
        ctx = subject.ctx
        if self.trigger in TIMER_TRIGGERS and ctx.timer_rule_id != self.id:
            return False  # a timer fires for the rule that armed it
        if self.statuses and ctx.new_status not in self.statuses:
            return False
        if ctx.actor_type == "automation" and ctx.actor_id == self.id:
            return False  # loop protection: a rule's own actions never re-trigger it
        if not self.predicates:
            return True
        if self.match_all:
            return all(p(subject) for p in self.predicates)
        return any(p(subject) for p in self.predicates)


def compile_rule(row: Mapping[str, Any]) -> CompiledRule:
    trigger = row["trigger"]
    return CompiledRule(
        id=row["id"],
        name=row["name"],
        trigger=trigger["type"],
        minutes=trigger.get("minutes"),
        statuses=frozenset(trigger.get("statuses") or ()),
        match_all=row["match"] == "all",
        predicates=tuple(BUILDERS[c["type"]](c) for c in row["conditions"]),
        actions=tuple(row["actions"]),
        stop_processing=row["stop_processing"],
    )


@dataclass(frozen=True, slots=True)
class RuleSet:
    """One organization's enabled rules, in evaluation order, by trigger."""

    version: int
    by_trigger: Mapping[str, tuple[CompiledRule, ...]] = field(default_factory=dict)

    @classmethod
    def of(cls, version: int, rows: Iterable[Mapping[str, Any]]) -> RuleSet:
        grouped: dict[str, list[CompiledRule]] = {}
        for row in rows:
            rule = compile_rule(row)
            grouped.setdefault(rule.trigger, []).append(rule)
        return cls(version, {t: tuple(rs) for t, rs in grouped.items()})

    def timer_rules(self, trigger: str) -> tuple[CompiledRule, ...]:
        return self.by_trigger.get(trigger, ())


def select_rules(rules: Sequence[CompiledRule], ctx: TriggerContext) -> list[CompiledRule]:
    """The rules that act on ``ctx``, in order, up to the first that stops processing."""
    subject = Subject(ctx)
    chosen: list[CompiledRule] = []
    for rule in rules:
        if rule.matches(subject):
            chosen.append(rule)
            if rule.stop_processing:
                break
    return chosen
