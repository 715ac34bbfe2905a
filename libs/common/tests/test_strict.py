"""Strict reading of query (and path) parameters: what it reads is what FastAPI reads,
and parameters it cannot read as FastAPI does are refused when declared."""

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlencode

import httpx
import pytest
from annotated_types import Ge
from fastapi import FastAPI, Header, Path, Query
from pydantic import AfterValidator
from starlette.requests import Request

from pytake_common.strict import StrictParams, Unusual, disjoint, read_query

THING = "0b7c9a52-3f1e-4d2a-9c1b-6e5f4a3b2c1d"


async def sample(
    thing_id: uuid.UUID,
    status: Annotated[list[Literal["open", "closed"]] | None, Query()] = None,
    tags: Annotated[list[str] | None, Query()] = None,
    ids: Annotated[list[uuid.UUID] | None, Query()] = None,
    kind: Literal["a", "b"] | None = None,
    n: Annotated[int, Query(ge=1, le=5)] = 2,
    q: Annotated[str | None, Query(max_length=3)] = None,
    flag: bool = False,
    at: datetime | None = None,
) -> None:
    READ.append(dict(locals()))


READ: list[dict[str, Any]] = []
SAMPLE = StrictParams.of(sample, path=("thing_id",))
APP = FastAPI()
APP.get("/things/{thing_id}")(sample)
QUERIES: list[list[tuple[str, str]]] = [
    [],
    [("status", "open")],
    [("status", "open"), ("status", "closed"), ("status", "open")],
    [("status", "opened")],
    [("status", "Open")],
    [("status", "")],
    [("tags", ""), ("tags", "x y"), ("q", "abc")],
    [("ids", THING), ("ids", THING.upper())],
    [("ids", THING), ("n", "5"), ("kind", "b")],
    [("kind", "c")],
    [("kind", "a"), ("kind", "b")],
    [("n", "0")],
    [("n", "6")],
    [("n", "05")],
    [("n", "+3")],
    [("q", "abcd")],
    [("flag", "true"), ("at", "2026-01-02T03:04:05.5+02:00")],
    [("flag", "1"), ("at", "2026-01-02T03:04:05Z")],
    [("at", "2026-13-02T03:04:05Z")],
    [("at", "2026-01-02T03:04:05")],
    [("unknown", "x")],
]


async def fastapi_reads(query: list[tuple[str, str]], thing: str) -> tuple[int, Any]:
    READ.clear()
    transport = httpx.ASGITransport(app=APP)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get(f"/things/{thing}?{urlencode(query)}")
    return r.status_code, (READ[0] if READ else None)


def strict_reads(query: list[tuple[str, str]], thing: str) -> dict[str, Any]:
    scope = {
        "type": "http",
        "query_string": urlencode(query).encode(),
        "path_params": {"thing_id": thing},
        "headers": [],
    }
    (arguments,) = read_query(Request(scope), SAMPLE)
    return arguments


@pytest.mark.parametrize("thing", [THING, THING.upper(), "not-a-uuid"])
@pytest.mark.parametrize("query", QUERIES)
async def test_what_it_reads_is_what_fastapi_reads(query, thing):
    status, fastapi = await fastapi_reads(query, thing)
    try:
        strict = strict_reads(query, thing)
    except Unusual:
        return  # left to FastAPI
    assert (status, strict) == (200, fastapi)


def test_plain_spellings_are_read():
    for query in (QUERIES[0], QUERIES[2], QUERIES[6], QUERIES[8], QUERIES[16]):
        assert strict_reads(query, THING)["thing_id"] == uuid.UUID(THING)
    arguments = strict_reads(QUERIES[2], THING)
    assert arguments["status"] == ["open", "closed", "open"]
    assert arguments["tags"] is None and arguments["n"] == 2
    for query in ([("status", "Open")], [("kind", "a"), ("kind", "b")], [("unknown", "x")]):
        with pytest.raises(Unusual):
            strict_reads(query, THING)
    with pytest.raises(Unusual):
        strict_reads([], THING.upper())


async def aliased(x: Annotated[str | None, Query(alias="y")] = None) -> None: ...
async def patterned(x: Annotated[str | None, Query(pattern="^a")] = None) -> None: ...
async def unqueried_list(x: list[str] | None = None) -> None: ...  # a body for FastAPI
async def bounded_list(x: Annotated[list[str] | None, Query(max_length=2)] = None) -> None: ...
async def filled_list(x: Annotated[list[str], Query()] = ["a"]) -> None: ...  # noqa: B006
async def aliased_list(x: Annotated[list[str] | None, Query(alias="y")] = None) -> None: ...
async def listed_lists(x: Annotated[list[list[str]] | None, Query()] = None) -> None: ...
async def numbered(x: Literal[1, 2] | None = None) -> None: ...
async def patterned_choice(
    x: Annotated[Literal["a"] | None, Query(pattern="a")] = None,
) -> None: ...
async def required(x: uuid.UUID) -> None: ...
async def header(x: Annotated[str | None, Header()] = None) -> None: ...
async def floating(x: float = 1.0) -> None: ...
async def bounded_uuid(x: Annotated[uuid.UUID | None, Query(max_length=3)] = None) -> None: ...
async def constrained(x: Annotated[int | None, Ge(1)] = None) -> None: ...
async def validated(x: Annotated[str | None, AfterValidator(str.upper)] = None) -> None: ...


@pytest.mark.parametrize(
    "function",
    [
        aliased,
        patterned,
        unqueried_list,
        bounded_list,
        filled_list,
        aliased_list,
        listed_lists,
        numbered,
        patterned_choice,
        required,
        header,
        floating,
        bounded_uuid,
        constrained,
        validated,
    ],
)
def test_parameters_it_cannot_read_as_fastapi_does_are_refused(function):
    with pytest.raises(TypeError):
        StrictParams.of(function)


async def in_path(x: uuid.UUID, y: bool = False) -> None: ...
async def path_with_default(x: uuid.UUID = uuid.UUID(int=0)) -> None: ...
async def path_declared(x: Annotated[uuid.UUID, Path()]) -> None: ...


def test_path_parameters_are_plain_and_taken():
    assert set(StrictParams.of(in_path, path=("x",)).path) == {"x"}
    for function, path in [
        (in_path, ("x", "z")),  # z not taken
        (path_with_default, ("x",)),
        (path_declared, ("x",)),
    ]:
        with pytest.raises(TypeError):
            StrictParams.of(function, path=path)


def test_functions_that_share_a_parameter_are_refused():
    async def one(x: str | None = None) -> None: ...
    async def other(x: str | None = None, y: int = 1) -> None: ...
    async def pathed(x: uuid.UUID) -> None: ...

    with pytest.raises(TypeError):
        disjoint(StrictParams.of(one), StrictParams.of(other))
    with pytest.raises(TypeError):
        disjoint(StrictParams.of(one), StrictParams.of(pathed, path=("x",)))
