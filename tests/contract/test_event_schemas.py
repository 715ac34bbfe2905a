"""Published event schemas cannot break silently.

The committed ``schemas/events/*.json`` must match the models (run ``make schemas``),
and no model may break the schema as first published under its type name: a
breaking change needs a new ``.vN`` event type.
"""

import json
import subprocess
from pathlib import Path

import pytest

from pytake_common.events import EVENT_TYPE_RE
from pytake_devstack.catalog import breaking_changes, dump, load_events, markdown, schemas

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "schemas" / "events"


def test_every_event_type_is_well_named_and_on_its_topic():
    events = load_events()
    assert events, "no event models found"
    for etype, cls in events.items():
        assert EVENT_TYPE_RE.match(etype)
        assert etype.startswith(cls.topic + ".")


def test_committed_schemas_and_catalog_match_the_models():
    generated = schemas()
    committed = {p.stem: p.read_text() for p in FOLDER.glob("*.json")}
    stale = [n for n, s in generated.items() if committed.get(n) != dump(s)]
    assert not stale, f"run `make schemas`: out of date: {stale}"
    orphans = set(committed) - set(generated)
    assert not orphans, f"schemas without a model (an event type was removed?): {orphans}"
    assert (ROOT / "docs" / "events.md").read_text() == markdown()


def _first_published(path: Path) -> dict | None:
    try:
        added = subprocess.run(
            ["git", "log", "--diff-filter=A", "--format=%H", "--", str(path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if not added:
            return None
        rel = path.relative_to(ROOT).as_posix()
        text = subprocess.run(
            ["git", "show", f"{added[-1]}:{rel}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return json.loads(text)


@pytest.mark.parametrize("etype", sorted(load_events()))
def test_no_breaking_change_since_first_publication(etype):
    first = _first_published(FOLDER / f"{etype}.json")
    if first is None:
        pytest.skip("not yet published (new in this change)")
    current = schemas()[etype]
    assert breaking_changes(first, current) == []


def test_breaking_change_detector_catches_removals_and_new_requirements():
    old = {"properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}
    new = {
        "properties": {"a": {"type": "integer"}, "c": {"type": "string"}},
        "required": ["a", "c"],
    }
    problems = breaking_changes(old, new)
    assert "property 'b' removed" in problems
    assert "property 'a' changed type" in problems
    assert "property 'c' became required" in problems
