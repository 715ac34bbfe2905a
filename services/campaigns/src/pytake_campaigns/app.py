"""Composition root of the campaigns service."""

from fastapi import FastAPI

from pytake_campaigns.api import campaigns, recipients
from pytake_campaigns.config import Settings
from pytake_campaigns.dispatcher import Dispatcher
from pytake_campaigns.handlers import GROUP, handlers
from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.web import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    dispatcher = Dispatcher(settings, db)
    app = create_service_app(
        settings,
        title="PyTake campaigns",
        routers=[campaigns.router, recipients.router],
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            EventConsumer(settings, db, GROUP, handlers(settings)).run,
            dispatcher.run,
        ],
    )
    app.state.dispatcher = dispatcher
    return app
