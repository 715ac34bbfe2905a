import asyncio
from pathlib import Path

import httpx
import pytest

import pytake_whatsapp_gateway
from pytake_devstack.pytest_plugin import migrated_database, service_app_fixtures
from pytake_devstack.tokens import TokenFactory
from pytake_meta_simulator import SimulatorSettings
from pytake_meta_simulator import create_app as create_simulator
from pytake_meta_simulator.testing import serve
from pytake_whatsapp_gateway.app import create_app
from pytake_whatsapp_gateway.config import Settings

from .helpers import PLATFORM_SECRET, FakeGraph, eventually

MIGRATIONS = Path(pytake_whatsapp_gateway.__file__).parent / "migrations"


@pytest.fixture
async def graph():
    fake = FakeGraph()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def settings(pg_url, graph):
    url = await migrated_database(pg_url, "whatsapp-gateway", MIGRATIONS)
    return Settings(
        own_database_url=url,
        env="test",
        run_workers=False,
        secret_key="k" * 40,
        platform_app_secret=PLATFORM_SECRET,
        graph_api_base=graph.base_url,
        send_timeout_s=5.0,
        send_max_attempts=3,
        send_retry_backoff_s=0.001,
        send_retry_max_backoff_s=0.005,
    )


app, tokens, client = service_app_fixtures(create_app, "whatsapp-gateway")


@pytest.fixture
async def directory(app):
    """The intake's directory of numbers, listening (tests run without the service's
    workers, so it does not serve unless a test asks for it)."""
    directory = app.state.webhook_intake.directory
    stop = asyncio.Event()
    task = asyncio.create_task(directory.run(stop))
    await eventually(lambda: directory.live)
    yield directory
    stop.set()
    await asyncio.wait_for(task, 10)


# The real Meta simulator over HTTP, and a gateway pointed at it ---------------


@pytest.fixture
async def simulator():
    """The Meta simulator on a free port (webhooks go to each number's ``webhook_url``)."""
    app = create_simulator(SimulatorSettings(webhook_url="http://127.0.0.1:9/none"))
    async with app.router.lifespan_context(app), serve(app, path="") as url:
        yield app, url


@pytest.fixture
async def gateway(settings, simulator, tmp_path):
    """The gateway pointed at the simulator and itself served over HTTP (for webhooks)."""
    application = create_app(
        settings.model_copy(
            update={"graph_api_base": simulator[1], "media_dir": tmp_path / "media"}
        )
    )
    async with serve(application, path="/webhooks/whatsapp") as webhook_url:
        yield application, webhook_url
    await application.state.db.dispose()


@pytest.fixture
def gtokens(gateway):
    factory = TokenFactory()
    factory.install(gateway[0])
    return factory


@pytest.fixture
async def api(gateway):
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=gateway[0]), base_url="http://whatsapp-gateway"
    ) as c:
        yield c


@pytest.fixture
async def sim(simulator):
    async with httpx.AsyncClient(base_url=simulator[1]) as c:
        yield c
