"""Dependencies shared by tenants' routers."""

from typing import Annotated

from fastapi import Depends

from pytake_common.db import Database
from pytake_common.security import Principal, Role, require_roles
from pytake_common.web import request_db

DB = Annotated[Database, Depends(request_db)]
#: The platform operator (routes across organizations).
SuperAdmin = Annotated[Principal, require_roles(frozenset({Role.SUPER_ADMIN}))]
