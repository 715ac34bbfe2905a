"""/readyz during a broker outage: the outbox keeps writes going, so Kafka being
down is reported (body and ``pytake_broker_up``) but does not take the pod out of
its Service; the database and the migration chain still decide readiness."""

from __future__ import annotations

import socket

import httpx
from prometheus_client import REGISTRY

from pytake_common.db import Database
from pytake_common.web import create_service_app

from .plumbing import settings_for


def closed_port() -> str:
    """An address where no broker listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


async def readyz(app) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        return await c.get("/readyz")


async def test_broker_down_is_reported_but_the_pod_stays_ready(db):
    settings = settings_for(closed_port(), "ready-no-broker")
    app = create_service_app(settings, title="t", routers=[], db=db)
    response = await readyz(app)
    assert response.status_code == 200, response.text
    assert response.json()["checks"] == {"database": "ok", "broker": "down"}
    assert REGISTRY.get_sample_value("pytake_broker_up", {"service": "ready-no-broker"}) == 0


async def test_broker_up_sets_the_gauge(db, kafka_bootstrap):
    app = create_service_app(
        settings_for(kafka_bootstrap, "ready-broker"), title="t", routers=[], db=db
    )
    response = await readyz(app)
    assert response.status_code == 200
    assert response.json()["checks"]["broker"] == "ok"
    assert REGISTRY.get_sample_value("pytake_broker_up", {"service": "ready-broker"}) == 1


async def test_the_database_still_decides(db):
    dead = Database("postgresql+asyncpg://nobody:x@127.0.0.1:1/none", app_role=None, pool_size=1)
    app = create_service_app(
        settings_for(closed_port(), "ready-no-db"), title="t", routers=[], db=dead
    )
    try:
        response = await readyz(app)
    finally:
        await dead.dispose()
    assert response.status_code == 503
    assert response.json()["checks"]["database"].startswith("down")


async def test_requiring_the_broker_is_still_an_option(db):
    settings = settings_for(closed_port(), "ready-strict").model_copy(
        update={"ready_requires_broker": True}
    )
    response = await readyz(create_service_app(settings, title="t", routers=[], db=db))
    assert response.status_code == 503
    assert response.json()["checks"]["broker"] == "down"
