"""Settings, the ``python -m`` entry point, health and shutdown behaviour."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from pytake_meta_simulator import SimulatorSettings, create_app
from pytake_meta_simulator import __main__ as entry
from pytake_meta_simulator.testing import Receiver


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("HOST", "PORT", "WEBHOOK_URL", "STATUS_DELAY_S"):
        monkeypatch.delenv(f"PYTAKE_SIMULATOR_{var}", raising=False)
        monkeypatch.delenv(f"PYTAKE_{var}", raising=False)
    settings = SimulatorSettings()
    assert settings.host == "127.0.0.1"
    assert settings.port == 8010
    assert settings.webhook_url == "http://127.0.0.1:8000/webhooks/whatsapp"
    assert settings.status_delay_s == 0.05


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTAKE_SIMULATOR_HOST", "0.0.0.0")
    monkeypatch.setenv("PYTAKE_SIMULATOR_PORT", "9123")
    monkeypatch.setenv("PYTAKE_SIMULATOR_WEBHOOK_URL", "http://gw:8000/webhooks/whatsapp")
    monkeypatch.setenv("PYTAKE_SIMULATOR_STATUS_DELAY_S", "0.5")
    settings = SimulatorSettings()
    assert (settings.host, settings.port) == ("0.0.0.0", 9123)
    assert settings.webhook_url == "http://gw:8000/webhooks/whatsapp"
    assert settings.status_delay_s == 0.5


def test_platform_host_and_port_are_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTAKE_SIMULATOR_HOST", raising=False)
    monkeypatch.delenv("PYTAKE_SIMULATOR_PORT", raising=False)
    monkeypatch.setenv("PYTAKE_HOST", "0.0.0.0")
    monkeypatch.setenv("PYTAKE_PORT", "8011")
    assert (SimulatorSettings().host, SimulatorSettings().port) == ("0.0.0.0", 8011)
    monkeypatch.setenv("PYTAKE_SIMULATOR_PORT", "8012")
    assert SimulatorSettings().port == 8012


def test_main_runs_uvicorn_with_configured_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, dict[str, Any]]] = []
    monkeypatch.setenv("PYTAKE_SIMULATOR_HOST", "127.0.0.2")
    monkeypatch.setenv("PYTAKE_SIMULATOR_PORT", "9124")
    monkeypatch.setattr("uvicorn.run", lambda app, **kw: calls.append((app, kw)))
    entry.main(["serve"])
    entry.main([])
    [(app, kwargs), _] = calls
    assert kwargs["host"] == "127.0.0.2"
    assert kwargs["port"] == 9124
    assert app.title == "PyTake Meta simulator"


async def test_healthz(sim: httpx.AsyncClient) -> None:
    resp = await sim.get("/healthz")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}


async def test_shutdown_cancels_pending_statuses_and_closes_client(receiver: Receiver) -> None:
    app = create_app(SimulatorSettings(webhook_url=receiver.url, status_delay_s=30))
    number = {
        "phone_number_id": "1",
        "waba_id": "2",
        "display_phone_number": "3",
        "access_token": "t",
        "app_secret": "s",
    }
    async with app.router.lifespan_context(app):
        sender = app.state.sim.sender
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://sim.test"
        ) as client:
            await client.post("/_sim/numbers", json=number)
            resp = await client.post(
                "/v21.0/1/messages",
                headers={"Authorization": "Bearer t"},
                json={"messaging_product": "whatsapp", "to": "5", "text": {"body": "x"}},
            )
            assert resp.status_code == 200
            assert sender.pending == 1
        started = time.monotonic()
    assert time.monotonic() - started < 5
    assert sender.pending == 0
    assert sender.client.closed
    assert receiver.received == []
    with pytest.raises(RuntimeError):
        _ = app.state.sim.sender
