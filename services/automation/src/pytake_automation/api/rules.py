"""``/v1/automation/rules``: org_admins manage rules; every role reads them and their runs."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from pytake_automation import rules
from pytake_automation.api.deps import DB, EngineDep
from pytake_automation.dry_run import DryRun, DryRunResult, dry_run
from pytake_automation.rule_model import RuleBody, RulePatch
from pytake_common.idempotency import IdempotencyGuard, IdempotencyKey, fingerprint, idempotent
from pytake_common.pagination import NUMBER, ROW_ID, TIMESTAMP, keyset
from pytake_common.security import Admin, Reader

#: rules in evaluation order, by (position, created_at, id)
RULES = keyset("rules", NUMBER, TIMESTAMP, ROW_ID)
#: a rule's runs, newest first, by (created_at, id)
RUNS = keyset("rule-runs", TIMESTAMP, ROW_ID)

router = APIRouter(prefix="/v1/automation/rules", tags=["automation-rules"])
Limit = Annotated[int, Query(ge=1, le=100)]
CursorParam = Annotated[str | None, Query(max_length=200)]


class RulePage(BaseModel):
    items: list[rules.Rule]
    next_cursor: str | None


class RunPage(BaseModel):
    items: list[rules.Run]
    next_cursor: str | None


@router.get("", response_model=RulePage)
async def list_rules(
    principal: Reader, db: DB, limit: Limit = 50, cursor: CursorParam = None
) -> RulePage:
    """In evaluation order."""
    after = RULES.decode(cursor) if cursor else None
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items, more = await rules.list_page(session, org, limit, after)
    last = items[-1] if items else None
    next_cursor = RULES.encode((last.position, last.created_at, last.id)) if more and last else None
    return RulePage(items=items, next_cursor=next_cursor)


@router.post("", status_code=201, response_model=rules.Rule)
async def create_rule(
    body: RuleBody,
    request: Request,
    principal: Admin,
    db: DB,
    engine: EngineDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    org = principal.organization_id
    fp = fingerprint("POST", request.url.path, body.model_dump(mode="json"))
    async with db.transaction(organization_id=org) as session:
        guard = IdempotencyGuard(session, org, principal.user_id, idempotency_key, fp)
        answer = await idempotent(
            guard, 201, lambda: rules.create(session, org, principal.user_id, body)
        )
    engine.cache.invalidate(org)
    return answer.response({"Location": f"{router.prefix}/{answer.body['id']}"})


@router.post("/dry-run", response_model=DryRunResult)
async def dry_run_rules(body: DryRun, principal: Reader, db: DB, engine: EngineDep) -> DryRunResult:
    """Which rules would act on the sample, and with which actions (nothing is done)."""
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await dry_run(session, engine.cache, org, body)


@router.get("/{rule_id}", response_model=rules.Rule)
async def get_rule(rule_id: uuid.UUID, principal: Reader, db: DB) -> rules.Rule:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await rules.get(session, principal.organization_id, rule_id)


@router.patch("/{rule_id}", response_model=rules.Rule)
async def patch_rule(
    rule_id: uuid.UUID, body: RulePatch, principal: Admin, db: DB, engine: EngineDep
) -> rules.Rule:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        rule = await rules.patch(session, org, principal.user_id, rule_id, body)
    engine.cache.invalidate(org)
    return rule


@router.delete("/{rule_id}", status_code=204, response_class=Response)
async def delete_rule(rule_id: uuid.UUID, principal: Admin, db: DB, engine: EngineDep) -> Response:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        await rules.remove(session, org, principal.user_id, rule_id)
    engine.cache.invalidate(org)
    return Response(status_code=204)


@router.get("/{rule_id}/runs", response_model=RunPage)
async def list_runs(
    rule_id: uuid.UUID, principal: Reader, db: DB, limit: Limit = 50, cursor: CursorParam = None
) -> RunPage:
    """What the rule did (or why it did not: ``rate_limited``, ``failed``), newest first."""
    before = RUNS.decode(cursor) if cursor else None
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        items, more = await rules.runs_page(session, org, rule_id, limit, before)
    last = items[-1] if items else None
    next_cursor = RUNS.encode((last.created_at, last.id)) if more and last else None
    return RunPage(items=items, next_cursor=next_cursor)
