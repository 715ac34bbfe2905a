"""``/v1/automation/flows``: org_admins edit, publish and test flows; every role reads them.

Also ``/v1/automation/flow-http-hosts``: the hosts flows of the organization may call.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pytake_automation.flows import catalog, dry_run
from pytake_automation.flows.definition import FlowDefinition
from pytake_automation.flows.validation import check_publishable
from pytake_common.db import Database
from pytake_common.errors import NotFound
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.pagination import ROW_ID, TIMESTAMP, keyset
from pytake_common.security import Admin, Reader
from pytake_common.web import request_db

DB = Annotated[Database, Depends(request_db)]
#: flows, by (created_at, id)
FLOWS = keyset("automation-flows", TIMESTAMP, ROW_ID)

router = APIRouter(prefix="/v1/automation/flows", tags=["flows"])
hosts_router = APIRouter(prefix="/v1/automation/flow-http-hosts", tags=["flows"])


class FlowPage(BaseModel):
    items: list[catalog.Flow]
    next_cursor: str | None


class VersionList(BaseModel):
    items: list[catalog.FlowVersion]


@router.get("", response_model=FlowPage)
async def list_flows(
    principal: Reader,
    db: DB,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> FlowPage:
    after = FLOWS.decode(cursor) if cursor else None
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items, more = await catalog.list_page(session, org, limit, after)
    next_cursor = FLOWS.encode((items[-1].created_at, items[-1].id)) if more else None
    return FlowPage(items=items, next_cursor=next_cursor)


@router.post("", status_code=201, response_model=catalog.Flow)
async def create_flow(
    body: catalog.FlowCreate,
    request: Request,
    principal: Admin,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """A draft; ``POST .../publish`` makes it a version new sessions run."""
    org, user = principal.organization_id, principal.user_id
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json", by_alias=True))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, user, idempotency_key, fp)

        async def produce() -> catalog.Flow:
            return await catalog.create(session, org, user, body)

        answer = await idempotent(guard, 201, produce)
    return answer.response({"Location": f"{router.prefix}/{answer.body['id']}"})


@router.get("/{flow_id}", response_model=catalog.Flow)
async def get_flow(flow_id: uuid.UUID, principal: Reader, db: DB) -> catalog.Flow:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await catalog.load(session, principal.organization_id, flow_id)


@router.patch("/{flow_id}", response_model=catalog.Flow)
async def patch_flow(
    flow_id: uuid.UUID, body: catalog.FlowPatch, principal: Admin, db: DB
) -> catalog.Flow:
    """Changes the draft only: published versions and running sessions stay as they are."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await catalog.patch(session, org, principal.user_id, flow_id, body)


@router.delete("/{flow_id}", status_code=204, response_class=Response)
async def delete_flow(flow_id: uuid.UUID, principal: Admin, db: DB) -> Response:
    """The flow and its versions; its active sessions end (reason ``flow_deleted``)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await catalog.remove(session, org, principal.user_id, flow_id)
    return Response(status_code=204)


@router.get("/{flow_id}/versions", response_model=VersionList)
async def list_versions(flow_id: uuid.UUID, principal: Reader, db: DB) -> VersionList:
    """Published versions, newest first (a flow has few: no pagination)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return VersionList(items=await catalog.versions(session, org, flow_id))


@router.post("/{flow_id}/publish", status_code=201, response_model=catalog.FlowVersion)
async def publish_flow(
    flow_id: uuid.UUID,
    request: Request,
    principal: Admin,
    db: DB,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Freeze the draft as the next version (422 ``flow_invalid`` naming each problem's
    node and field); sessions started from now on run it, running ones keep theirs."""
    org, user = principal.organization_id, principal.user_id
    fp = fingerprint("POST", request.url.path, None)
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, user, idempotency_key, fp)

        async def produce() -> catalog.FlowVersion:
            return await catalog.publish(session, org, user, flow_id)

        answer = await idempotent(guard, 201, produce)
    return answer.response()


@router.post("/{flow_id}/test", response_model=dry_run.Transcript)
async def test_flow(
    flow_id: uuid.UUID, body: dry_run.FlowTest, principal: Admin, db: DB
) -> dry_run.Transcript:
    """Run the draft (or ``version``) on sample inputs; nothing is sent, stored or called."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        flow = await catalog.load(session, org, flow_id)
        if body.version is None:
            definition = FlowDefinition.model_validate(flow.definition)
            check_publishable(definition, allowed_hosts=await catalog.allowed_hosts(session, org))
        else:
            found = await catalog.published(session, org, flow_id, body.version)
            if found is None:
                raise NotFound(f"flow {flow_id} has no version {body.version}")
            definition = found[1]
    return dry_run.run(definition, body, body.version)


@hosts_router.get("", response_model=catalog.HttpHosts)
async def get_hosts(principal: Reader, db: DB) -> catalog.HttpHosts:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return catalog.HttpHosts(hosts=await catalog.allowed_hosts(session, org))


@hosts_router.put("", response_model=catalog.HttpHosts)
async def put_hosts(body: catalog.HttpHosts, principal: Admin, db: DB) -> catalog.HttpHosts:
    """Replace the list. Publishing checks it, and every call checks it again."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await catalog.set_allowed_hosts(session, org, body)
