"""Composition root of the WhatsApp gateway."""

import asyncio

import httpx
from fastapi import FastAPI

from pytake_common.consumer import EventConsumer
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.web import Worker, create_service_app
from pytake_whatsapp_gateway.api.numbers import router as numbers_router
from pytake_whatsapp_gateway.api.webhooks import router as webhooks_router
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.handlers import make_handlers
from pytake_whatsapp_gateway.sending.dispatcher import Dispatcher
from pytake_whatsapp_gateway.sending.sender import Sender
from pytake_whatsapp_gateway.webhooks.intake import WebhookIntake

CONSUMER_GROUP = "whatsapp-gateway"


def graph_http_client(settings: Settings) -> httpx.AsyncClient:
    """The one HTTP client of a process for Meta's Graph API (pooled, keep-alive)."""
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.send_timeout_s),
        limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        follow_redirects=False,
        headers={"User-Agent": "pytake-whatsapp-gateway/0.1"},
    )


def send_worker(settings: Settings, db: Database, box: SecretBox) -> Worker:
    """The consumer (records send requests, marks reads) and the send dispatcher."""

    async def run(stop: asyncio.Event) -> None:
        async with graph_http_client(settings) as client:
            sender = Sender(settings, db, box, client)
            consumer = EventConsumer(settings, db, CONSUMER_GROUP, make_handlers(sender))
            dispatcher = Dispatcher(settings, db, sender)
            await asyncio.gather(consumer.run(stop), dispatcher.run(stop))

    return run


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    # Each send in flight holds up to two connections (its advisory lock, its transactions).
    db = Database(
        settings.service_database_url(),
        app_role=settings.db_app_role,
        pool_size=max(10, settings.send_concurrency + 8),
    )
    box = SecretBox(settings.secret)
    platform = settings.platform_app_secret
    app = create_service_app(
        settings,
        title="PyTake WhatsApp gateway",
        routers=[numbers_router, webhooks_router],
        db=db,
        workers=lambda: [OutboxRelay(settings, db).run, send_worker(settings, db, box)],
    )
    app.state.secret_box = box
    app.state.webhook_intake = WebhookIntake(
        db, box, platform.get_secret_value() if platform else None
    )
    return app
