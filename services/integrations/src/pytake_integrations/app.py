"""Composition root of the integrations service."""

from fastapi import FastAPI

from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.retention import Retention
from pytake_common.web import create_service_app
from pytake_integrations.api import deliveries, endpoints
from pytake_integrations.config import Settings
from pytake_integrations.delivery import DeliveryWorker
from pytake_integrations.endpoints import SealedAnswers, UrlPolicy
from pytake_integrations.fanout import FanOutConsumer
from pytake_integrations.tables import deliveries as delivery_log


def log_retention(settings: Settings) -> Retention:
    """The delivery log (the ``deliveries`` rows) is kept ``delivery_log_retention_s``."""
    return Retention(delivery_log, delivery_log.c.created_at, settings.delivery_log_retention_s)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    box = SecretBox(settings.secret)
    worker = DeliveryWorker(settings, db, box)
    app = create_service_app(
        settings,
        title="PyTake integrations",
        routers=[endpoints.router, deliveries.router],
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            FanOutConsumer(settings, db).run,
            worker.run,
        ],
        on_shutdown=[worker.close],
        retention=[log_retention(settings)],
    )
    app.state.secret_box = box
    app.state.sealed_answers = SealedAnswers(settings.secret)
    app.state.url_policy = UrlPolicy(allow_loopback=settings.webhooks_allow_loopback)
    app.state.delivery_worker = worker
    return app
