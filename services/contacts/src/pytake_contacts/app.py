"""Composition root of the contacts service."""

from fastapi import FastAPI

from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.reads import TenantReads
from pytake_common.web import create_service_app
from pytake_contacts.api.routes import routers
from pytake_contacts.config import Settings
from pytake_contacts.handlers import HANDLERS


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    reads = TenantReads(settings.service_database_url(), app_role=settings.db_app_role)
    app = create_service_app(
        settings,
        title="PyTake contacts",
        routers=routers,
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            EventConsumer(settings, db, "contacts", HANDLERS).run,
        ],
        on_shutdown=[reads.close],
    )
    app.state.reads = reads
    return app
