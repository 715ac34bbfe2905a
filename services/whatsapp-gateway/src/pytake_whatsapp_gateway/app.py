"""Composition root of the WhatsApp gateway."""

import asyncio

import httpx
from fastapi import FastAPI

from pytake_common.consumer import EventConsumer
from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.rawpg import TenantWrites
from pytake_common.retention import Retention
from pytake_common.web import Worker, create_service_app
from pytake_whatsapp_gateway.api.media import router as media_router
from pytake_whatsapp_gateway.api.numbers import router as numbers_router
from pytake_whatsapp_gateway.api.templates import router as templates_router
from pytake_whatsapp_gateway.api.webhooks import WebhookEdge
from pytake_whatsapp_gateway.api.webhooks import router as webhooks_router
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.handlers import make_handlers
from pytake_whatsapp_gateway.media.fetcher import MediaFetcher
from pytake_whatsapp_gateway.media.storage import (
    LocalMediaStorage,
    MediaStorage,
    S3MediaStorage,
)
from pytake_whatsapp_gateway.sending.dispatcher import Dispatcher
from pytake_whatsapp_gateway.sending.graph import GraphClient
from pytake_whatsapp_gateway.sending.sender import Sender
from pytake_whatsapp_gateway.tables import webhook_deliveries
from pytake_whatsapp_gateway.templates.service import TemplateService
from pytake_whatsapp_gateway.templates.worker import TemplateSyncWorker
from pytake_whatsapp_gateway.webhooks.directory import NumberDirectory
from pytake_whatsapp_gateway.webhooks.intake import WebhookIntake
from pytake_whatsapp_gateway.webhooks.throttle import FailureBudget

CONSUMER_GROUP = "whatsapp-gateway"
#: Connections of the webhook intake's raw pool (a delivery holds one for its three round
#: trips); the Database's pool is smaller by as many pairs as it took before (pool+overflow).
INTAKE_WRITES = 3


def database_pool_size(settings: Settings) -> int:
    """Each send in flight holds up to two connections (its advisory lock, its
    transactions); the rest serve the API, the consumers and the other webhooks."""
    return max(10, settings.send_concurrency + 6)


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
            try:
                await asyncio.gather(consumer.run(stop), dispatcher.run(stop))
            finally:
                await sender.aclose()

    return run


def template_sync_worker(settings: Settings, db: Database, box: SecretBox) -> Worker:
    """Re-reads every WABA's templates from Meta periodically (one replica at a time)."""

    async def run(stop: asyncio.Event) -> None:
        async with graph_http_client(settings) as client:
            graph = GraphClient(client, settings.graph_api_base, settings.graph_api_version)
            service = TemplateService(settings, db, box, graph)
            await TemplateSyncWorker(service, settings.template_sync_interval_s).run(stop)

    return run


def media_worker(settings: Settings, db: Database, box: SecretBox, storage: MediaStorage) -> Worker:
    """Fetches inbound media from Meta into ``storage`` (every replica shares the queue)."""

    async def run(stop: asyncio.Event) -> None:
        async with graph_http_client(settings) as client:
            await MediaFetcher(settings, db, box, client, storage).run(stop)

    return run


def media_storage(settings: Settings) -> MediaStorage:
    """The store of fetched media that the settings choose."""
    if settings.media_storage == "local":
        return LocalMediaStorage(settings.media_root())
    assert settings.media_s3_bucket is not None  # the settings check it
    key_id, secret = settings.media_s3_access_key_id, settings.media_s3_secret_access_key
    return S3MediaStorage(
        bucket=settings.media_s3_bucket,
        prefix=settings.media_s3_prefix,
        endpoint_url=settings.media_s3_endpoint_url,
        region=settings.media_s3_region,
        access_key_id=key_id.get_secret_value() if key_id else None,
        secret_access_key=secret.get_secret_value() if secret else None,
        addressing_style=settings.media_s3_addressing_style,
        part_size=settings.media_s3_part_size_bytes,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(
        settings.service_database_url(),
        app_role=settings.db_app_role,
        pool_size=database_pool_size(settings),
    )
    box = SecretBox(settings.secret)
    platform = settings.platform_app_secret
    api_graph = graph_http_client(settings)  # the API routes' calls (templates)
    storage = media_storage(settings)
    directory = NumberDirectory(db.url)
    intake_writes = TenantWrites(
        settings.service_database_url(), app_role=settings.db_app_role, max_size=INTAKE_WRITES
    )
    app = create_service_app(
        settings,
        title="PyTake WhatsApp gateway",
        routers=[numbers_router, templates_router, media_router, webhooks_router],
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            directory.run,
            send_worker(settings, db, box),
            template_sync_worker(settings, db, box),
            media_worker(settings, db, box, storage),
        ],
        on_shutdown=[api_graph.aclose, storage.aclose, intake_writes.close],
        retention=[
            Retention(
                webhook_deliveries,
                webhook_deliveries.c.received_at,
                settings.webhook_delivery_retention_s,
            )
        ],
    )
    # Meta's deliveries bypass FastAPI (see WebhookEdge): Starlette builds its middleware
    # stack lazily through this method, so the edge goes around it.
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: WebhookEdge(app, build_stack())  # type: ignore[method-assign]
    app.state.secret_box = box
    app.state.media_storage = storage
    app.state.graph = GraphClient(api_graph, settings.graph_api_base, settings.graph_api_version)
    app.state.template_service = TemplateService(settings, db, box, app.state.graph)
    app.state.webhook_intake = WebhookIntake(
        db,
        box,
        platform.get_secret_value() if platform else None,
        settings.delivery_limits(),
        FailureBudget(settings.webhook_refusal_burst, settings.webhook_refusal_per_s),
        FailureBudget(settings.webhook_unknown_burst, settings.webhook_unknown_per_s),
        directory,
        intake_writes,
    )
    return app
