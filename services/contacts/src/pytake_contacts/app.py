"""Composition root of the contacts service."""

from fastapi import FastAPI

from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.rawpg import TenantReads
from pytake_common.web import create_service_app
from pytake_contacts.api.routes import routers
from pytake_contacts.config import Settings
from pytake_contacts.handlers import HANDLERS

#: Contact lists in flight per process. A list costs PostgreSQL 1.1-1.3 ms of CPU and
#: this process 0.4: four statements keep the event loop busy, and more only time-slice
#: PostgreSQL's cores between more backends. On the 2-core benchmark box 8 gave p95
#: 27.1-27.6 ms and 4 gave 23.7-24.6 (p99 39-41 against 31-32; bench/contacts_search.py,
#: runs alternated). Conversations' reads, light in PostgreSQL, keep the default 8: at 4
#: its inbox p95 was 17.8 ms against 8.6 at 8 (bench/inbox.py, back to back).
LIST_READS = 4


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    reads = TenantReads.of(settings, max_size=LIST_READS)
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
