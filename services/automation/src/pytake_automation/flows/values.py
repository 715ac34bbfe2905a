"""The small value rules of flows: placeholders, JSON paths, answer parsing, comparison.

No expression language: a placeholder names one value, a JSON path walks keys and
indexes, and answers are parsed by a fixed kind.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

Scalar = str | int | float | bool | None

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.-]{0,100})\s*\}\}")
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s.]{1,63}(\.[^@\s.]{1,63})+$")
_PATH_STEP = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
VALUE_MAX = 1024


def fold(text: str) -> str:
    """Case- and accent-insensitive form of ``text``, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.split())


def bare(text: str) -> str:
    """``fold`` without punctuation: what a stop word is compared with."""
    return " ".join(re.sub(r"[^\w\s]", " ", fold(text)).split())


def as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render(template: str, lookup: Callable[[str], Any], *, url: bool = False) -> str:
    """Replace each ``{{name}}`` with its value ('' when unknown); ``url`` percent-encodes."""

    def one(match: re.Match[str]) -> str:
        text = as_text(lookup(match.group(1)))
        return quote(text, safe="") if url else text

    return _PLACEHOLDER.sub(one, template)


def render_json(value: Any, lookup: Callable[[str], Any]) -> Any:
    """A JSON body with placeholders replaced inside its strings (keys stay literal)."""
    if isinstance(value, str):
        return render(value, lookup)
    if isinstance(value, list):
        return [render_json(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: render_json(v, lookup) for k, v in value.items()}
    return value


def json_path(document: Any, path: str) -> Any:
    """``$.a.b[0].c`` (or ``a.b[0].c``) in ``document``; None when any step is missing."""
    spec = path.strip()
    spec = spec[1:] if spec.startswith("$") else spec
    if spec and not spec.startswith((".", "[")):
        spec = "." + spec
    position, current = 0, document
    while position < len(spec):
        step = _PATH_STEP.match(spec, position)
        if step is None:
            return None
        key, index = step.groups()
        if key is not None and isinstance(current, Mapping):
            current = current.get(key)
        elif index is not None and isinstance(current, list) and int(index) < len(current):
            current = current[int(index)]
        else:
            return None
        position = step.end()
    return current


def storable(value: Any) -> Scalar:
    """A value a variable keeps: scalars as they are, anything else as bounded text."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return value[:VALUE_MAX]
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)[:VALUE_MAX]


def parse_number(text: str) -> float | None:
    cleaned = text.strip().replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(\.\d{3})+,\d+", cleaned):  # 1.234,5
        cleaned = cleaned.replace(".", "").replace(",", ".")
    elif re.fullmatch(r"-?\d+,\d+", cleaned):  # 12,5
        cleaned = cleaned.replace(",", ".")
    else:
        cleaned = cleaned.replace(",", "")  # 1,234.5
    try:
        number = float(cleaned)
    except ValueError:
        return None
    return number if number == number and abs(number) != float("inf") else None


def parse_email(text: str) -> str | None:
    candidate = text.strip()
    return candidate.lower() if _EMAIL.match(candidate) and len(candidate) <= 254 else None


def parse_date(text: str) -> str | None:
    """ISO ``2026-12-31`` or day first ``31/12/2026``, ``31-12-2026``, ``31.12.2026``."""
    candidate = text.strip()
    for pattern in ("%Y-%m-%d", "%d/%m/%Y", "%d-%m-%Y", "%d.%m.%Y"):
        try:
            parsed: date = datetime.strptime(candidate, pattern).date()
        except ValueError:
            continue
        return parsed.isoformat()
    return None


def compare(actual: Any, op: str, expected: Any) -> bool:
    """The branch operators; texts compare folded, numbers numerically."""
    if op == "exists":
        return actual not in (None, "")
    if op == "not_exists":
        return actual in (None, "")
    if op in ("gt", "lt"):
        left, right = _number(actual), _number(expected)
        if left is None or right is None:
            return False
        return left > right if op == "gt" else left < right
    if op == "in":
        options = expected if isinstance(expected, list) else [expected]
        return any(_same(actual, option) for option in options)
    if op == "contains":
        return actual is not None and fold(as_text(expected)) in fold(as_text(actual))
    same = _same(actual, expected)
    return not same if op == "not_equals" else same


def _same(actual: Any, expected: Any) -> bool:
    left, right = _number(actual), _number(expected)
    if left is not None and right is not None:
        return left == right
    return fold(as_text(actual)) == fold(as_text(expected))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    return parse_number(str(value)) if isinstance(value, str) else None
