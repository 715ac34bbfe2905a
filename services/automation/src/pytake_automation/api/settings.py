"""``/v1/automation/settings``: what only automation uses (see automation_settings.py)."""

from fastapi import APIRouter

from pytake_automation import automation_settings
from pytake_automation.api.deps import DB
from pytake_automation.automation_settings import AutomationSettings, AutomationSettingsPatch
from pytake_common.security import Admin, Reader

router = APIRouter(prefix="/v1/automation/settings", tags=["automation-settings"])


@router.get("", response_model=AutomationSettings)
async def get_settings(principal: Reader, db: DB) -> AutomationSettings:
    async with db.transaction(organization_id=principal.organization_id) as session:
        return await automation_settings.load(session, principal.organization_id)


@router.patch("", response_model=AutomationSettings)
async def patch_settings(
    body: AutomationSettingsPatch, principal: Admin, db: DB
) -> AutomationSettings:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        return await automation_settings.patch(session, org, principal.user_id, body)
