"""Query parameters read strictly, for the fast paths of hot reads.

A fast path (:func:`pytake_common.web.fast_path`) takes only the plain spelling of a
valid value: canonical lowercase UUIDs, ``true``/``false``, integers without sign or
leading zeros, RFC 3339 times with seconds and an offset, text within its length, one
of a ``Literal``'s strings; each parameter once (a list's may repeat), no parameter the
functions do not take. Anything else raises :class:`Unusual` and the request goes to
FastAPI, whose answer (the value it parses, or the validation error) is then the one
given.

The rules come from the signatures FastAPI reads (:meth:`StrictParams.of`), so the
constraints of a parameter (``Query(max_length=...)``, ``ge``/``le``) are written once;
a parameter this module cannot read as FastAPI would is refused when the module that
declares it is imported, rather than read differently.
"""

import inspect
import re
import types
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from annotated_types import Ge, Le, MaxLen
from fastapi import params
from pydantic import TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from starlette.requests import Request

UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
INT_RE = re.compile(r"0|[1-9][0-9]{0,8}")
TIME_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
FLAGS = {"true": True, "false": False}
#: pydantic's own parser, so a time has the value (and tzinfo) FastAPI would give it
TIMES: TypeAdapter[datetime] = TypeAdapter(datetime)

#: reads one value of a parameter, or raises Unusual
Read = Callable[[str], Any]


class Unusual(Exception):
    """A request the fast path leaves to FastAPI."""


def read_uuid(value: str) -> uuid.UUID:
    if UUID_RE.fullmatch(value) is None:
        raise Unusual
    return uuid.UUID(value)


def read_flag(value: str) -> bool:
    flag = FLAGS.get(value)
    if flag is None:
        raise Unusual
    return flag


def read_time(value: str) -> datetime:
    if TIME_RE.fullmatch(value) is None:
        raise Unusual
    try:
        return TIMES.validate_python(value)
    except ValidationError:  # e.g. month 13, hour 24
        raise Unusual from None


def text_reader(longest: int | None) -> Read:
    def read(value: str) -> str:
        if longest is not None and len(value) > longest:
            raise Unusual
        return value

    return read


def int_reader(low: int | None, high: int | None) -> Read:
    def read(value: str) -> int:
        if INT_RE.fullmatch(value) is None:
            raise Unusual
        number = int(value)
        if (low is not None and number < low) or (high is not None and number > high):
            raise Unusual
        return number

    return read


def choice_reader(name: str, kind: Any) -> Read:
    """One of the strings of ``Literal[...]`` (FastAPI takes exactly those, as they are)."""
    choices = get_args(kind)
    if not all(type(choice) is str for choice in choices):
        raise TypeError(f"{name}: no strict reading of {kind!r}")
    allowed = frozenset(choices)

    def read(value: str) -> str:
        if value not in allowed:
            raise Unusual
        return value

    return read


def reader_for(name: str, kind: Any, query: FieldInfo | None) -> Read:
    """How to read parameter ``name`` of type ``kind`` with its ``Query(...)``, if any."""
    if get_origin(kind) is Literal:
        if query is not None and (query.metadata or query.alias or query.validation_alias):
            raise TypeError(f"{name}: no strict reading of {kind!r} with {query!r}")
        return choice_reader(name, kind)
    constraints: dict[type, Any] = {}
    if query is not None:
        if query.alias or query.validation_alias:
            raise TypeError(f"{name}: no strict reading of an aliased parameter")
        for item in query.metadata:
            if type(item) not in (MaxLen, Ge, Le) or type(item) in constraints:
                raise TypeError(f"{name}: no strict reading of {item!r}")
            constraints[type(item)] = item
    if kind is str and constraints.keys() <= {MaxLen}:
        longest = constraints.get(MaxLen)
        return text_reader(longest.max_length if longest else None)
    if kind is int and constraints.keys() <= {Ge, Le}:
        low, high = constraints.get(Ge), constraints.get(Le)
        return int_reader(low.ge if low else None, high.le if high else None)
    simple: dict[Any, Read] = {uuid.UUID: read_uuid, bool: read_flag, datetime: read_time}
    if kind in simple and not constraints:
        return simple[kind]
    raise TypeError(f"{name}: no strict reading of {kind!r} with {list(constraints.values())}")


@dataclass(frozen=True, slots=True)
class StrictParams:
    """The parameters of a function FastAPI calls (an endpoint or a dependency): how to
    read each query parameter strictly, the defaults of those left out, which of them
    are lists (the parameter repeated), and how to read the path's parameters."""

    readers: dict[str, Read]
    defaults: dict[str, Any]
    lists: frozenset[str] = frozenset()
    path: dict[str, Read] = field(default_factory=dict)

    @classmethod
    def of(cls, function: Callable[..., Any], *, path: Collection[str] = ()) -> "StrictParams":
        """From ``function``'s signature; parameters given by dependencies are left out.

        ``path``: the parameters the route's path gives (``{name}``, Starlette's ``str``
        convertor), plain and without a default; the others are query parameters.
        """
        hints = get_type_hints(function, include_extras=True)
        readers: dict[str, Read] = {}
        defaults: dict[str, Any] = {}
        lists: set[str] = set()
        path_readers: dict[str, Read] = {}
        for name, parameter in inspect.signature(function).parameters.items():
            kind: Any = hints[name]
            extras: list[Any] = []
            if get_origin(kind) is Annotated:
                kind, *extras = get_args(kind)
            if any(isinstance(extra, params.Depends) for extra in extras):
                continue
            if name in path:
                if extras or parameter.default is not inspect.Parameter.empty:
                    raise TypeError(f"{name}: not a plain path parameter")
                path_readers[name] = reader_for(name, kind, None)
                continue
            if any(not isinstance(extra, FieldInfo) for extra in extras):
                # a validator or constraint FastAPI would apply: not read the same here
                raise TypeError(f"{name}: {extras} beside the type")
            fields = [extra for extra in extras if isinstance(extra, FieldInfo)]
            if any(not isinstance(f, params.Query) for f in fields) or len(fields) > 1:
                raise TypeError(f"{name}: not a plain query parameter")
            query = fields[0] if fields else None
            default = parameter.default
            if default is inspect.Parameter.empty or isinstance(default, FieldInfo):
                raise TypeError(f"{name}: no strict reading without a plain default")
            if get_origin(kind) in (Union, types.UnionType):
                choices = [arg for arg in get_args(kind) if arg is not type(None)]
                if len(choices) != 1:
                    raise TypeError(f"{name}: no strict reading of {kind!r}")
                kind = choices[0]
            if get_origin(kind) is list:
                # FastAPI reads a list from the query only with Query(); its constraints
                # would bound the list, not the items; a default other than None would
                # be one object shared by the requests
                if query is None or query.metadata or query.alias or query.validation_alias:
                    raise TypeError(f"{name}: a list needs a plain Query()")
                if default is not None:
                    raise TypeError(f"{name}: a list's default must be None")
                (item,) = get_args(kind)
                readers[name] = reader_for(name, item, None)
                lists.add(name)
            else:
                readers[name] = reader_for(name, kind, query)
            defaults[name] = default
        if missing := set(path) - set(path_readers):
            raise TypeError(f"path parameters not taken: {sorted(missing)}")
        return cls(readers, defaults, frozenset(lists), path_readers)


def disjoint(*functions: StrictParams) -> tuple[StrictParams, ...]:
    """``functions``, checked to take no parameter in common (FastAPI would hand a
    shared one to each; :func:`read_query` gives a query parameter to the first)."""
    names = [name for function in functions for name in (*function.readers, *function.path)]
    if len(names) != len(set(names)):
        raise TypeError(f"parameters taken twice: {sorted(names)}")
    return functions


def read_query(request: Request, *functions: StrictParams) -> list[dict[str, Any]]:
    """The arguments of each function from the request's query (and path), defaults
    filled in (``functions`` checked by :func:`disjoint`).

    Raises Unusual for a parameter none of them takes, a repeated one (but a list's),
    or a value not in its plain spelling.
    """
    found = [dict(function.defaults) for function in functions]
    seen: set[str] = set()
    for name, value in request.query_params.multi_items():
        for function, arguments in zip(functions, found, strict=True):
            read = function.readers.get(name)
            if read is not None:
                if name not in function.lists:
                    if name in seen:
                        raise Unusual
                    arguments[name] = read(value)
                elif name in seen:
                    arguments[name].append(read(value))
                else:
                    arguments[name] = [read(value)]
                break
        else:
            raise Unusual
        seen.add(name)
    for function, arguments in zip(functions, found, strict=True):
        for name, read in function.path.items():
            arguments[name] = read(request.path_params[name])
    return found
