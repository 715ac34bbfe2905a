"""What must hold before a flow is published: a connected graph and Meta's limits.

Every problem names its node and field, so an editor can point at it; all problems
are reported at once (one 422 problem+json), not only the first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pytake_automation.flows.definition import (
    AskNode,
    ButtonsMessage,
    FlowDefinition,
    HttpNode,
    ListMessage,
    Message,
    Node,
    SendNode,
    choices_of,
    edges,
)
from pytake_common.errors import InvalidInput

#: Meta's limits for interactive messages (docs: WhatsApp Cloud API, interactive)
BUTTONS_MAX, BUTTON_TITLE_MAX, BUTTON_ID_MAX = 3, 20, 256
BODY_MAX, FOOTER_MAX, HEADER_MAX = 1024, 60, 60
LIST_BODY_MAX, LIST_BUTTON_MAX, SECTIONS_MAX, ROWS_MAX = 4096, 20, 10, 10
ROW_TITLE_MAX, ROW_DESCRIPTION_MAX, SECTION_TITLE_MAX, ROW_ID_MAX = 24, 72, 24, 200

_TEMPLATE = re.compile(r"\{\{")


@dataclass(frozen=True)
class Problem:
    node_id: str | None
    field: str
    code: str
    detail: str

    def as_dict(self) -> dict[str, str | None]:
        return {"node_id": self.node_id, "field": self.field, "code": self.code}


class FlowInvalid(InvalidInput):
    code, title = "flow_invalid", "The flow cannot be published"

    def __init__(self, problems: list[Problem]) -> None:
        first = problems[0]
        where = f"node '{first.node_id}'" if first.node_id else "the flow"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            f"{where}: {first.detail}{more}",
            problems=[p.as_dict() | {"detail": p.detail} for p in problems],
        )
        self.problems = problems


def check_publishable(flow: FlowDefinition, *, allowed_hosts: Iterable[str] = ()) -> None:
    """Raise :class:`FlowInvalid` listing every problem, or return when there is none."""
    problems = problems_of(flow, allowed_hosts={h.lower() for h in allowed_hosts})
    if problems:
        raise FlowInvalid(problems)


def problems_of(flow: FlowDefinition, *, allowed_hosts: set[str]) -> list[Problem]:
    found: list[Problem] = []
    ids: set[str] = set()
    for node in flow.nodes:
        if node.id in ids:
            found.append(Problem(node.id, "id", "duplicate_node", "two nodes share this id"))
        ids.add(node.id)
    if flow.start not in ids:
        found.append(Problem(None, "start", "unknown_start", f"no node '{flow.start}' to start at"))
    for node in flow.nodes:
        for field, target in edges(node):
            if target not in ids:
                detail = f"{field} leads to '{target}', which is not a node"
                found.append(Problem(node.id, field, "dangling_edge", detail))
        found += _node_problems(node, allowed_hosts)
    reached = _reachable(flow, ids)
    for node in flow.nodes:
        if node.id not in reached and flow.start in ids:
            detail = "no path from the start node reaches it"
            found.append(Problem(node.id, "id", "unreachable_node", detail))
    return found


def _reachable(flow: FlowDefinition, ids: set[str]) -> set[str]:
    by_id = {node.id: node for node in flow.nodes}
    seen: set[str] = set()
    todo = [flow.start] if flow.start in ids else []
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        todo += [t for _, t in edges(by_id[current]) if t in ids and t not in seen]
    return seen


def _node_problems(node: Node, allowed_hosts: set[str]) -> list[Problem]:
    if isinstance(node, SendNode):
        return _message_problems(node.id, "message", node.message)
    if isinstance(node, AskNode):
        found = _message_problems(node.id, "prompt", node.prompt)
        if node.validate_as.kind == "option" and not (
            node.validate_as.options or choices_of(node.prompt)
        ):
            detail = "an option answer needs options, or buttons or a list in the prompt"
            found.append(Problem(node.id, "validate.options", "no_options", detail))
        return found
    if isinstance(node, HttpNode):
        return _http_problems(node, allowed_hosts)
    return []


def _too_long(node_id: str, field: str, value: str | None, limit: int) -> list[Problem]:
    if value is None or len(value) <= limit:
        return []
    detail = f"{field} has {len(value)} characters; WhatsApp allows {limit}"
    return [Problem(node_id, field, "meta_limit", detail)]


def _message_problems(node_id: str, field: str, message: Message) -> list[Problem]:
    found: list[Problem] = []
    if isinstance(message, ButtonsMessage):
        if len(message.buttons) > BUTTONS_MAX:
            detail = f"{len(message.buttons)} buttons; WhatsApp allows {BUTTONS_MAX}"
            found.append(Problem(node_id, f"{field}.buttons", "meta_limit", detail))
        found += _too_long(node_id, f"{field}.body", message.body, BODY_MAX)
        found += _too_long(node_id, f"{field}.footer", message.footer, FOOTER_MAX)
        found += _too_long(node_id, f"{field}.header", message.header, HEADER_MAX)
        for i, button in enumerate(message.buttons):
            where = f"{field}.buttons[{i}]"
            found += _too_long(node_id, f"{where}.title", button.title, BUTTON_TITLE_MAX)
            found += _too_long(node_id, f"{where}.id", button.id, BUTTON_ID_MAX)
        found += _unique(node_id, f"{field}.buttons", [b.id for b in message.buttons])
    elif isinstance(message, ListMessage):
        found += _list_problems(node_id, field, message)
    return found


def _list_problems(node_id: str, field: str, message: ListMessage) -> list[Problem]:
    found: list[Problem] = []
    found += _too_long(node_id, f"{field}.button", message.button, LIST_BUTTON_MAX)
    found += _too_long(node_id, f"{field}.body", message.body, LIST_BODY_MAX)
    found += _too_long(node_id, f"{field}.footer", message.footer, FOOTER_MAX)
    found += _too_long(node_id, f"{field}.header", message.header, HEADER_MAX)
    if len(message.sections) > SECTIONS_MAX:
        detail = f"{len(message.sections)} sections; WhatsApp allows {SECTIONS_MAX}"
        found.append(Problem(node_id, f"{field}.sections", "meta_limit", detail))
    rows = [row for section in message.sections for row in section.rows]
    if len(rows) > ROWS_MAX:
        detail = f"{len(rows)} rows in all sections; WhatsApp allows {ROWS_MAX}"
        found.append(Problem(node_id, f"{field}.sections", "meta_limit", detail))
    if len(message.sections) > 1 and any(not s.title for s in message.sections):
        detail = "a list with several sections needs a title on each"
        found.append(Problem(node_id, f"{field}.sections", "meta_limit", detail))
    for s, section in enumerate(message.sections):
        where = f"{field}.sections[{s}]"
        found += _too_long(node_id, f"{where}.title", section.title, SECTION_TITLE_MAX)
        for r, row in enumerate(section.rows):
            at = f"{where}.rows[{r}]"
            found += _too_long(node_id, f"{at}.title", row.title, ROW_TITLE_MAX)
            found += _too_long(node_id, f"{at}.description", row.description, ROW_DESCRIPTION_MAX)
            found += _too_long(node_id, f"{at}.id", row.id, ROW_ID_MAX)
    found += _unique(node_id, f"{field}.sections", [row.id for row in rows])
    return found


def _unique(node_id: str, field: str, ids: list[str]) -> list[Problem]:
    if len(set(ids)) == len(ids):
        return []
    return [Problem(node_id, field, "duplicate_option", "two choices share an id")]


def _http_problems(node: HttpNode, allowed_hosts: set[str]) -> list[Problem]:
    parts = urlsplit(node.url)
    origin = parts.netloc
    if _TEMPLATE.search(parts.scheme + "://" + origin):
        detail = "the URL's scheme and host must be literal (values only in path and query)"
        return [Problem(node.id, "url", "templated_host", detail)]
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [Problem(node.id, "url", "invalid_url", "the URL needs http(s):// and a host")]
    if parts.username or parts.password:
        detail = "the URL must not carry credentials"
        return [Problem(node.id, "url", "invalid_url", detail)]
    if parts.hostname.lower() not in allowed_hosts:
        detail = f"host '{parts.hostname}' is not in the organization's allow-list"
        return [Problem(node.id, "url", "host_not_allowed", detail)]
    return []
