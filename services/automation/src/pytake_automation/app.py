"""Composition root of the automation service."""

from fastapi import FastAPI

from pytake_automation.api import flows as flows_api
from pytake_automation.config import Settings
from pytake_automation.flows import sessions as flow_sessions
from pytake_automation.flows.http import FlowHttpClient
from pytake_automation.flows.timers import FlowTimers
from pytake_automation.handlers import HANDLERS
from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.web import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    flow_http = FlowHttpClient(allow_loopback=settings.flow_http_allow_loopback)
    flow_sessions.configure_http(flow_http)
    return create_service_app(
        settings,
        title="PyTake automation",
        routers=[flows_api.router, flows_api.hosts_router],
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            EventConsumer(settings, db, "automation", HANDLERS).run,
            FlowTimers(db, settings.timer_poll_interval_s, settings.timer_batch).run,
        ],
        on_shutdown=[flow_http.close],
    )
