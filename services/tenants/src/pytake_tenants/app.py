"""Composition root of the tenants service."""

from fastapi import FastAPI

from pytake_common.consumer import EventConsumer
from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.web import create_service_app
from pytake_tenants.api import departments, operator, organizations, plans
from pytake_tenants.config import Settings
from pytake_tenants.handlers import SignupPolicy, build_handlers
from pytake_tenants.trials import TrialExpiry


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    signup = SignupPolicy(
        trial_plan=settings.signup_trial_plan, trial_days=settings.signup_trial_days
    )
    handlers = build_handlers(signup)
    return create_service_app(
        settings,
        title="PyTake tenants",
        # /me routes are registered before the operator's /{organization_id} ones.
        routers=[
            organizations.router,
            operator.router,
            operator.audit_router,
            plans.router,
            departments.router,
        ],
        db=db,
        workers=lambda: [
            OutboxRelay(settings, db).run,
            EventConsumer(settings, db, "tenants", handlers).run,
            TrialExpiry(db, settings.trial_check_interval_s).run,
        ],
    )
