"""Query parameters read strictly, for the hot reads' fast paths.

A fast path (:func:`pytake_common.web.fast_path`) takes only the plain spelling of
a valid value: canonical lowercase UUIDs, ``true``/``false``, a limit without
leading zeros, each parameter once (lists may repeat). Anything else raises
:class:`Unusual` and the request goes to FastAPI, whose answer (the value it
parses, or the validation error) is then the one given. Unknown parameters are
ignored, as FastAPI ignores them.
"""

import re
import uuid
from collections.abc import Collection

from starlette.requests import Request

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
LIMIT_RE = re.compile(r"[1-9][0-9]{0,3}")
FLAGS = {"true": True, "false": False}


class Unusual(Exception):
    """A request the fast path leaves to FastAPI."""


def strict_uuid(value: str) -> uuid.UUID:
    if UUID_RE.fullmatch(value) is None:
        raise Unusual
    return uuid.UUID(value)


class StrictQuery:
    def __init__(self, request: Request, known: Collection[str]) -> None:
        self.values: dict[str, list[str]] = {}
        for name, value in request.query_params.multi_items():
            if name in known:
                self.values.setdefault(name, []).append(value)

    def one(self, name: str) -> str | None:
        values = self.values.get(name)
        if values is None:
            return None
        if len(values) != 1:
            raise Unusual
        return values[0]

    def absent(self, name: str) -> None:
        if name in self.values:
            raise Unusual

    def uuid(self, name: str) -> uuid.UUID | None:
        value = self.one(name)
        return None if value is None else strict_uuid(value)

    def flag(self, name: str) -> bool | None:
        value = self.one(name)
        if value is None:
            return None
        if value not in FLAGS:
            raise Unusual
        return FLAGS[value]

    def limit(self, name: str, default: int, high: int) -> int:
        value = self.one(name)
        if value is None:
            return default
        if LIMIT_RE.fullmatch(value) is None or int(value) > high:
            raise Unusual
        return int(value)

    def choices(self, name: str, allowed: Collection[str]) -> list[str] | None:
        values = self.values.get(name)
        if values is None:
            return None
        if any(value not in allowed for value in values):
            raise Unusual
        return values
