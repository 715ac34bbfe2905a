"""A chatbot flow as data: a graph of typed nodes whose edges are node ids.

Nothing here runs user code. Texts may name values as ``{{name}}`` (a flow variable),
``{{contact.name}}`` or ``{{contact.<attribute>}}``; conditions compare values with a
fixed set of operators. Structure (types, required fields) is checked when a draft is
saved; the graph and Meta's limits are checked on publish (:mod:`.validation`), so a
draft may be incomplete while it is being edited.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NodeId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
VarName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
AttrKey = Annotated[str, Field(min_length=1, max_length=64)]
Text = Annotated[str, Field(min_length=1, max_length=4096)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- messages ---------------------------------------------------------------------------


class TextMessage(_Strict):
    kind: Literal["text"] = "text"
    text: Text


class MediaMessage(_Strict):
    kind: Literal["media"] = "media"
    media_type: Literal["image", "video", "audio", "document"]
    #: a public https URL WhatsApp downloads, or the id of media uploaded to WhatsApp
    link: str | None = Field(default=None, max_length=2048)
    media_id: str | None = Field(default=None, max_length=128)
    caption: str | None = Field(default=None, max_length=1024)
    filename: str | None = Field(default=None, max_length=240)

    @model_validator(mode="after")
    def _one_source(self) -> MediaMessage:
        if (self.link is None) == (self.media_id is None):
            raise ValueError("give exactly one of link or media_id")
        return self


class Button(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=256)]
    title: Annotated[str, Field(min_length=1, max_length=256)]


class ButtonsMessage(_Strict):
    """Reply buttons; Meta's limits (≤3 buttons, title ≤20, ...) are checked on publish."""

    kind: Literal["buttons"] = "buttons"
    header: str | None = Field(default=None, max_length=4096)
    body: Text
    footer: str | None = Field(default=None, max_length=4096)
    buttons: list[Button] = Field(min_length=1, max_length=64)


class Row(_Strict):
    id: Annotated[str, Field(min_length=1, max_length=256)]
    title: Annotated[str, Field(min_length=1, max_length=256)]
    description: str | None = Field(default=None, max_length=1024)


class Section(_Strict):
    title: str | None = Field(default=None, max_length=256)
    rows: list[Row] = Field(min_length=1, max_length=64)


class ListMessage(_Strict):
    kind: Literal["list"] = "list"
    header: str | None = Field(default=None, max_length=4096)
    body: Text
    footer: str | None = Field(default=None, max_length=4096)
    #: the text of the button that opens the list
    button: Annotated[str, Field(min_length=1, max_length=256)]
    sections: list[Section] = Field(min_length=1, max_length=64)


Message = Annotated[
    TextMessage | MediaMessage | ButtonsMessage | ListMessage, Field(discriminator="kind")
]


def choices_of(message: Message | None) -> list[tuple[str, str]]:
    """(id, title) of the buttons or list rows a message offers, in order."""
    if isinstance(message, ButtonsMessage):
        return [(b.id, b.title) for b in message.buttons]
    if isinstance(message, ListMessage):
        return [(r.id, r.title) for s in message.sections for r in s.rows]
    return []


# -- conditions (branch) ----------------------------------------------------------------

Op = Literal["equals", "not_equals", "in", "contains", "exists", "not_exists", "gt", "lt"]


class _Compare(_Strict):
    op: Op = "equals"
    #: a string, number or list (for ``in``); texts compare case- and accent-insensitively
    value: str | float | list[str] | None = None


class AnswerIs(_Compare):
    """The last answer the flow received (an option's id, or the validated value)."""

    kind: Literal["answer"] = "answer"


class VariableIs(_Compare):
    kind: Literal["variable"] = "variable"
    name: VarName


class AttributeIs(_Compare):
    kind: Literal["attribute"] = "attribute"
    key: AttrKey


class HasTag(_Strict):
    kind: Literal["tag"] = "tag"
    #: a tag's name or id
    tag: Annotated[str, Field(min_length=1, max_length=100)]
    present: bool = True


class BusinessHours(_Strict):
    kind: Literal["business_hours"] = "business_hours"
    open: bool = True


Condition = Annotated[
    AnswerIs | VariableIs | AttributeIs | HasTag | BusinessHours, Field(discriminator="kind")
]


class Case(_Strict):
    when: Condition
    next: NodeId


# -- nodes ------------------------------------------------------------------------------


class _Node(_Strict):
    id: NodeId


class SendNode(_Node):
    type: Literal["send"] = "send"
    message: Message
    #: None ends the flow after the message
    next: NodeId | None = None


class Validation(_Strict):
    kind: Literal["text", "number", "email", "date", "option"] = "text"
    min_length: int | None = Field(default=None, ge=0, le=4096)
    max_length: int | None = Field(default=None, ge=1, le=4096)
    minimum: float | None = None
    maximum: float | None = None
    #: for ``option``: the accepted choices; default: the prompt's buttons or list rows
    options: list[Button] | None = Field(default=None, min_length=1, max_length=64)


class Store(_Strict):
    """Where a valid answer goes: a contact attribute (contacts applies it) or a variable."""

    target: Literal["attribute", "variable"]
    key: Annotated[str, Field(min_length=1, max_length=64)]


class AskNode(_Node):
    type: Literal["ask"] = "ask"
    prompt: Message
    validate_as: Validation = Field(default_factory=Validation, alias="validate")
    store: Store | None = None
    #: how the answer is named in the hand-off summary (default: the store key or node id)
    label: str | None = Field(default=None, max_length=60)
    #: said before the prompt is repeated after an invalid answer
    reprompt: str | None = Field(default=None, max_length=1024)
    max_attempts: int = Field(default=3, ge=1, le=10)
    #: where to go once ``max_attempts`` answers were invalid; None ends the flow
    on_invalid: NodeId | None = None
    timeout_seconds: int | None = Field(default=None, ge=10, le=7 * 86400)
    #: where to go when no answer came within ``timeout_seconds``; None ends the flow
    on_timeout: NodeId | None = None
    next: NodeId

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class BranchNode(_Node):
    type: Literal["branch"] = "branch"
    #: the first case whose condition holds wins
    cases: list[Case] = Field(min_length=1, max_length=50)
    default: NodeId


class SetTagNode(_Node):
    type: Literal["set_tag"] = "set_tag"
    #: a tag's name (created by contacts if missing) or id
    tag: Annotated[str, Field(min_length=1, max_length=100)]
    remove: bool = False
    next: NodeId | None = None


class SetAttributeNode(_Node):
    type: Literal["set_attribute"] = "set_attribute"
    key: AttrKey
    #: may name values: ``{{answer}}``
    value: str = Field(max_length=1024)
    next: NodeId | None = None


class HttpNode(_Node):
    """Calls an allow-listed host; the answer's values go into variables by JSON path.

    The scheme and host are literal (templates only in path, query and body), so the
    publish check of the organization's allow-list is the check that runs."""

    type: Literal["http"] = "http"
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    url: str = Field(min_length=8, max_length=2048)
    headers: dict[str, Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=dict, max_length=20
    )
    body: Any = None
    timeout_seconds: float = Field(default=5.0, gt=0, le=15)
    #: variable -> JSON path into the answer's body, e.g. ``$.order.status``
    response_map: dict[VarName, Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=dict, alias="map", max_length=30
    )
    #: a variable that receives the HTTP status
    status_variable: VarName | None = None
    next: NodeId
    #: where to go on a timeout, a refused host or a non-2xx answer; None ends the flow
    on_error: NodeId | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class HandoffNode(_Node):
    type: Literal["handoff"] = "handoff"
    department_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    #: said to the customer before the hand-off
    message: str | None = Field(default=None, max_length=4096)
    #: the note's first line; the answers collected follow it
    note: str = Field(default="Chatbot hand-off", max_length=500)

    @model_validator(mode="after")
    def _one_target(self) -> HandoffNode:
        if (self.department_id is None) == (self.agent_id is None):
            raise ValueError("give exactly one of department_id or agent_id")
        return self


class EndNode(_Node):
    type: Literal["end"] = "end"
    message: str | None = Field(default=None, max_length=4096)
    #: resolve the conversation when the flow ends here
    resolve: bool = False


Node = Annotated[
    SendNode
    | AskNode
    | BranchNode
    | SetTagNode
    | SetAttributeNode
    | HttpNode
    | HandoffNode
    | EndNode,
    Field(discriminator="type"),
]


class FlowDefinition(_Strict):
    start: NodeId
    nodes: list[Node] = Field(min_length=1, max_length=200)
    #: a customer message that is exactly one of these (ignoring case, accents and
    #: punctuation) ends the session
    stop_words: list[Annotated[str, Field(min_length=1, max_length=40)]] = Field(
        default_factory=list, max_length=20
    )
    #: said when a stop word ended the session
    stop_message: str | None = Field(default=None, max_length=4096)
    #: an ask without a timeout of its own ends the session after this long
    idle_timeout_seconds: int = Field(default=86400, ge=60, le=7 * 86400)

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)


def edges(node: Node) -> list[tuple[str, str]]:
    """(field, target) of every edge leaving ``node``."""
    out: list[tuple[str, str | None]] = []
    if isinstance(node, SendNode | SetTagNode | SetAttributeNode):
        out.append(("next", node.next))
    elif isinstance(node, AskNode):
        out += [("next", node.next), ("on_invalid", node.on_invalid)]
        out.append(("on_timeout", node.on_timeout))
    elif isinstance(node, BranchNode):
        out += [(f"cases[{i}].next", case.next) for i, case in enumerate(node.cases)]
        out.append(("default", node.default))
    elif isinstance(node, HttpNode):
        out += [("next", node.next), ("on_error", node.on_error)]
    return [(field, target) for field, target in out if target is not None]
