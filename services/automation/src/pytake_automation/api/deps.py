"""Dependencies shared by automation's routers."""

from typing import Annotated

from fastapi import Depends, Request

from pytake_automation.engine import Engine
from pytake_common.db import Database
from pytake_common.web import request_db

DB = Annotated[Database, Depends(request_db)]


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


EngineDep = Annotated[Engine, Depends(_engine)]
