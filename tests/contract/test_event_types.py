"""Consumers name events through the generated catalog, never by re-typing them.

:mod:`pytake_common.event_types` is generated from the event models (``make
schemas``) and must match them; outside the modules declaring the events, no
source file spells an event type or topic as a string literal.
"""

import ast
from pathlib import Path

from pytake_common import event_types
from pytake_devstack.catalog import EVENT_TYPES_MODULE, event_types_module, load_events

ROOT = Path(__file__).resolve().parents[2]
#: The declarations (each service's ``events.py``) and the generated catalog itself.
DECLARING = {"events.py", "event_types.py"}


def _published_names() -> set[str]:
    events = load_events()
    return set(events) | {cls.topic for cls in events.values()}


def test_generated_catalog_matches_the_models():
    committed = (ROOT / EVENT_TYPES_MODULE).read_text()
    assert committed == event_types_module(), "run `make schemas`: event_types.py is stale"


def test_catalog_names_every_published_type_and_topic():
    constants = {v for k, v in vars(event_types).items() if k.isupper()}
    assert constants == _published_names()


def _literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


def test_no_source_re_types_an_event_name():
    names = _published_names()
    prefixes = tuple(f"{t}." for t in {n.rsplit(".", 2)[0] for n in names if n.count(".") > 2})
    sources = [
        p
        for folder in ("libs/common/src", *(str(s) for s in Path(ROOT / "services").glob("*/src")))
        for p in (ROOT / folder).rglob("*.py")
        if p.name not in DECLARING and "migrations" not in p.parts
    ]
    assert sources
    found = [
        f"{p.relative_to(ROOT)}:{line}: {value!r}"
        for p in sources
        for line, value in _literals(p)
        if value in names or value.startswith(prefixes)
    ]
    assert not found, "import these from pytake_common.event_types:\n" + "\n".join(found)
