"""Flows as the API sees them: drafts, immutable versions, publishing, allowed hosts.

Functions take the caller's session and never commit (route handlers do).
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_automation.events import FlowCreated, FlowDeleted, FlowPublished, FlowUpdated
from pytake_automation.flows import sessions as flow_sessions
from pytake_automation.flows.definition import FlowDefinition
from pytake_automation.flows.tables import flow_http_hosts, flow_versions, flows
from pytake_automation.flows.validation import check_publishable
from pytake_common import rawpg
from pytake_common.errors import InvalidInput, NotFound
from pytake_common.outbox import emit

MAX_HOSTS = 50


class FlowCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    definition: FlowDefinition


class FlowPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    definition: FlowDefinition | None = None


class Flow(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    #: the draft
    definition: dict[str, Any]
    published_version: int | None
    created_by: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class FlowVersion(BaseModel):
    flow_id: uuid.UUID
    version: int
    definition: dict[str, Any]
    published_by: uuid.UUID | None
    published_at: datetime


class HttpHosts(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hosts: list[str] = Field(max_length=MAX_HOSTS)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        out = []
        for host in value:
            name = host.strip().lower().rstrip(".")
            if not name or len(name) > 253 or any(c in name for c in "/:@ ?#[]{}"):
                raise ValueError(f"{host!r} is not a host name (no scheme, port or path)")
            out.append(name)
        return sorted(set(out))


def _dump(definition: FlowDefinition) -> dict[str, Any]:
    return definition.model_dump(mode="json", by_alias=True, exclude_none=True)


def _view(row: Any) -> Flow:
    return Flow.model_validate(row, from_attributes=True)


async def load(
    session: AsyncSession, org: uuid.UUID, flow_id: uuid.UUID, *, lock: bool = False
) -> Flow:
    stmt = select(flows).where(flows.c.id == flow_id, flows.c.organization_id == org)
    row = (await session.execute(stmt.with_for_update() if lock else stmt)).one_or_none()
    if row is None:
        raise NotFound(f"flow {flow_id} not found")
    return _view(row)


async def create(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, body: FlowCreate
) -> Flow:
    flow_id = uuid.uuid4()
    row = (
        await session.execute(
            insert(flows)
            .values(
                id=flow_id,
                organization_id=org,
                name=body.name,
                description=body.description,
                definition=_dump(body.definition),
                created_by=user,
            )
            .returning(*flows.c)
        )
    ).one()
    flow = _view(row)
    await emit(
        session,
        FlowCreated(flow_id=flow_id, organization_id=org, name=flow.name, created_by=user),
        flow_id,
    )
    return flow


async def list_page(
    session: AsyncSession, org: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> tuple[list[Flow], bool]:
    stmt = select(flows).where(flows.c.organization_id == org)
    if after is not None:
        stmt = stmt.where(tuple_(flows.c.created_at, flows.c.id) > tuple_(*after))
    rows = (
        await session.execute(stmt.order_by(flows.c.created_at, flows.c.id).limit(limit + 1))
    ).all()
    return [_view(r) for r in rows[:limit]], len(rows) > limit


async def patch(
    session: AsyncSession,
    org: uuid.UUID,
    user: uuid.UUID | None,
    flow_id: uuid.UUID,
    body: FlowPatch,
) -> Flow:
    await load(session, org, flow_id, lock=True)
    values: dict[str, Any] = {}
    given = body.model_fields_set
    if "name" in given and body.name is not None:
        values["name"] = body.name
    if "description" in given:
        values["description"] = body.description
    if "definition" in given and body.definition is not None:
        values["definition"] = _dump(body.definition)
    if not values:
        raise InvalidInput("nothing to change: give name, description or definition")
    row = (
        await session.execute(
            update(flows)
            .where(flows.c.id == flow_id, flows.c.organization_id == org)
            .values(**values, updated_at=func.now())
            .returning(*flows.c)
        )
    ).one()
    flow = _view(row)
    event = FlowUpdated(
        flow_id=flow_id,
        organization_id=org,
        name=flow.name,
        published_version=flow.published_version,
        updated_by=user,
    )
    await emit(session, event, flow_id)
    return flow


async def remove(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, flow_id: uuid.UUID
) -> None:
    await load(session, org, flow_id, lock=True)
    ended = await flow_sessions.end_all_of_flow(session, org, flow_id, "flow_deleted")
    await session.execute(
        delete(flows).where(flows.c.id == flow_id, flows.c.organization_id == org)
    )
    event = FlowDeleted(flow_id=flow_id, organization_id=org, deleted_by=user, sessions_ended=ended)
    await emit(session, event, flow_id)


async def allowed_hosts(session: AsyncSession, org: uuid.UUID) -> list[str]:
    stmt = select(flow_http_hosts.c.host).where(flow_http_hosts.c.organization_id == org)
    return sorted((await session.execute(stmt)).scalars())


async def set_allowed_hosts(session: AsyncSession, org: uuid.UUID, body: HttpHosts) -> HttpHosts:
    await session.execute(delete(flow_http_hosts).where(flow_http_hosts.c.organization_id == org))
    if body.hosts:
        await session.execute(
            insert(flow_http_hosts), [{"organization_id": org, "host": h} for h in body.hosts]
        )
    return body


async def publish(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, flow_id: uuid.UUID
) -> FlowVersion:
    """Freeze the draft as the next version once it passes every publish check."""
    flow = await load(session, org, flow_id, lock=True)
    definition = FlowDefinition.model_validate(flow.definition)
    check_publishable(definition, allowed_hosts=await allowed_hosts(session, org))
    version = (flow.published_version or 0) + 1
    row = (
        await session.execute(
            insert(flow_versions)
            .values(
                flow_id=flow_id,
                version=version,
                organization_id=org,
                definition=flow.definition,
                published_by=user,
            )
            .returning(*flow_versions.c)
        )
    ).one()
    await session.execute(
        update(flows)
        .where(flows.c.id == flow_id, flows.c.organization_id == org)
        .values(published_version=version, updated_at=func.now())
    )
    event = FlowPublished(
        flow_id=flow_id,
        organization_id=org,
        name=flow.name,
        published_version=version,
        version=version,
        published_by=user,
    )
    await emit(session, event, flow_id)
    return FlowVersion.model_validate(row, from_attributes=True)


async def versions(session: AsyncSession, org: uuid.UUID, flow_id: uuid.UUID) -> list[FlowVersion]:
    await load(session, org, flow_id)
    stmt = (
        select(flow_versions)
        .where(flow_versions.c.flow_id == flow_id, flow_versions.c.organization_id == org)
        .order_by(flow_versions.c.version.desc())
    )
    return [
        FlowVersion.model_validate(r, from_attributes=True) for r in await session.execute(stmt)
    ]


#: published definitions, parsed once: versions never change, so an entry never goes stale
_PARSED: OrderedDict[tuple[uuid.UUID, uuid.UUID, int], FlowDefinition] = OrderedDict()
PARSED_MAX = 1024


#: Whether the flow still exists (a cached version's check; SQL text on the driver).
_FLOW_EXISTS = "SELECT EXISTS (SELECT 1 FROM flows WHERE id = $1 AND organization_id = $2)"


async def published(
    session: AsyncSession, org: uuid.UUID, flow_id: uuid.UUID, version: int | None = None
) -> tuple[int, FlowDefinition] | None:
    """The given version, or the newest published one; None if there is none.

    A version's definition is parsed once per process (an active session's every message
    needs it); the row is still looked up when the version is not given or not cached, so
    a deleted flow or another organization's is never served from memory alone."""
    if version is not None and (cached := _PARSED.get((org, flow_id, version))) is not None:
        conn = await rawpg.driver(session)
        exists = await conn.fetchval(_FLOW_EXISTS, flow_id, org)
        return (version, cached) if exists else None
    stmt = select(flow_versions.c.version, flow_versions.c.definition).where(
        flow_versions.c.flow_id == flow_id, flow_versions.c.organization_id == org
    )
    if version is None:
        stmt = stmt.order_by(flow_versions.c.version.desc()).limit(1)
    else:
        stmt = stmt.where(flow_versions.c.version == version)
    row = (await session.execute(stmt)).one_or_none()
    if row is None:
        return None
    key = (org, flow_id, row.version)
    definition = _PARSED.get(key) or FlowDefinition.model_validate(row.definition)
    _PARSED[key] = definition
    _PARSED.move_to_end(key)
    while len(_PARSED) > PARSED_MAX:
        _PARSED.popitem(last=False)
    return row.version, definition
