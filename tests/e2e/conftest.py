import shutil
import tempfile
from pathlib import Path

import pytest

from pytake_devstack.mainloop import MainLoop
from pytake_devstack.stack import LocalStack


@pytest.fixture(scope="session")
def stack(pg_url, kafka_bootstrap):
    """Every PyTake service, the gateway and the Meta simulator as real processes."""
    state = Path(tempfile.mkdtemp(prefix="pytake-e2e-"))
    local = LocalStack(
        pg_url,
        kafka_bootstrap,
        state,
        extra_env={
            "PYTAKE_ENV": "test",
            "PYTAKE_OUTBOX_POLL_INTERVAL_S": "0.5",
            "PYTAKE_KAFKA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "PYTAKE_KAFKA_CONSUMER_HEARTBEAT_MS": "500",
        },
    )
    try:
        local.start()
    except Exception:
        print(local.log_tail())
        local.stop()
        raise
    yield local
    local.stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
async def loop(stack):
    driver = MainLoop(stack.url("api-gateway"), stack.url("meta-simulator"))
    yield driver
    await driver.aclose()
