"""``/v1/plans``: the plan catalog."""

from fastapi import APIRouter
from pydantic import BaseModel

from pytake_common.security import Reader
from pytake_tenants.plans import PLANS, Limits

router = APIRouter(prefix="/v1/plans", tags=["plans"])


class PlanView(BaseModel):
    name: str
    title: str
    limits: Limits


class PlanList(BaseModel):
    items: list[PlanView]


@router.get("", response_model=PlanList)
async def list_plans(_: Reader) -> PlanList:
    return PlanList(
        items=[PlanView(name=p.name, title=p.title, limits=p.limits_dict()) for p in PLANS.values()]
    )
