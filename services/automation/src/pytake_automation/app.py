"""Composition root of the automation service."""

from fastapi import FastAPI

from pytake_automation.api import csat, rules, sla
from pytake_automation.api import flows as flows_api
from pytake_automation.api import settings as settings_api
from pytake_automation.config import Settings
from pytake_automation.engine import Engine
from pytake_automation.flows import sessions as flow_sessions
from pytake_automation.flows.http import FlowHttpClient
from pytake_automation.handlers import handlers
from pytake_automation.rule_cache import RuleCache, RuleEvents
from pytake_automation.tables import runs
from pytake_automation.timers import TimerWorker
from pytake_automation.triggers import Triggers
from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.retention import Retention
from pytake_common.web import create_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    flow_http = FlowHttpClient(allow_loopback=settings.flow_http_allow_loopback)
    flow_sessions.configure_http(flow_http)
    cache = RuleCache(settings.rule_cache_size)
    engine = Engine(settings, cache)
    triggers = Triggers(engine)
    table = handlers(triggers)
    timer_worker = TimerWorker(
        db, triggers.on_timer, settings.timer_batch, settings.timer_poll_interval_s
    )
    app = create_service_app(
        settings,
        title="PyTake automation",
        routers=[
            rules.router,
            settings_api.router,
            sla.router,
            csat.router,
            flows_api.router,
            flows_api.hosts_router,
        ],
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            EventConsumer(settings, db, "automation", table).run,
            timer_worker.run,
        ],
        replica_views=[RuleEvents(settings, cache)],
        on_shutdown=[flow_http.close],
        retention=[
            Retention(runs, runs.c.created_at, settings.run_retention_s),
            flow_sessions.retention(settings.run_retention_s),
        ],
    )
    app.state.engine = engine
    app.state.handlers = table
    app.state.timers = timer_worker
    return app
