"""Composition root of the automation service."""

from fastapi import FastAPI

from pytake_automation.config import Settings
from pytake_automation.handlers import HANDLERS
from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.web import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    return create_service_app(
        settings,
        title="PyTake automation",
        routers=[],
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            EventConsumer(settings, db, "automation", HANDLERS).run,
        ],
    )
