"""Dependencies shared by campaigns' routers."""

from typing import Annotated

from fastapi import Depends, Request

from pytake_campaigns.config import Settings
from pytake_common.db import Database
from pytake_common.tenancy import OrganizationDirectory
from pytake_common.web import request_db

DB = Annotated[Database, Depends(request_db)]


def _directory(request: Request) -> OrganizationDirectory | None:
    directory: OrganizationDirectory | None = getattr(request.app.state, "organizations", None)
    return directory


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


#: organizations' plans and limits (tenants' events; started by create_service_app)
Directory = Annotated[OrganizationDirectory | None, Depends(_directory)]
CampaignSettings = Annotated[Settings, Depends(_settings)]
