"""Composition root of the conversations service."""

from fastapi import FastAPI

from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.event_types import WHATSAPP_MESSAGE_RECEIVED_V1
from pytake_common.outbox import OutboxRelay
from pytake_common.rawpg import TenantReads
from pytake_common.web import create_service_app
from pytake_conversations.api import canned, messages, metrics, routes, start, stream
from pytake_conversations.automation_actions import automation_handlers
from pytake_conversations.campaign_sends import campaign_handlers
from pytake_conversations.config import Settings
from pytake_conversations.handlers import HANDLERS
from pytake_conversations.inbound_batch import RECEIVED_SET
from pytake_conversations.maintenance import Maintenance
from pytake_conversations.stream import StreamHub


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    hub = StreamHub(db)
    reads = TenantReads.of(settings)
    app = create_service_app(
        settings,
        title="PyTake conversations",
        # metrics before routes: "/metrics" must not be taken for a conversation id
        routers=[
            metrics.router,
            routes.router,
            start.router,
            messages.router,
            canned.router,
            stream.router,
        ],
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            EventConsumer(
                settings,
                db,
                "conversations",
                {
                    **HANDLERS,
                    # set-based: messages to open conversations, a batch at a time
                    WHATSAPP_MESSAGE_RECEIVED_V1: RECEIVED_SET,
                    **automation_handlers(settings.service_window_hours),
                    **campaign_handlers(
                        settings.service_window_hours,
                        app.state.organizations,
                        settings.campaign_contact_wait_s,
                    ),
                },
            ).run,
            Maintenance(settings, db, app.state.organizations).run,
        ],
        on_shutdown=[hub.stop, reads.close],
    )
    app.state.stream_hub = hub
    app.state.reads = reads
    return app
