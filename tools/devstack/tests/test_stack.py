"""The stack description that `make run` (honcho) and the end-to-end tests both start."""

from pathlib import Path

import pytest

import pytake_devstack.__main__ as cli
from pytake_devstack.stack import DB_SERVICES, DEFAULT_PORTS, StackConfig, module, processes


def _cfg(tmp_path: Path) -> StackConfig:
    return StackConfig("postgresql://postgres@/postgres?host=/tmp/pg", "127.0.0.1:9092", tmp_path)


def test_every_service_and_the_simulator_is_started_on_its_port(tmp_path):
    procs = {p.name: p for p in processes(_cfg(tmp_path))}
    assert set(procs) == set(DEFAULT_PORTS)
    for name in DB_SERVICES:
        assert procs[name].argv[-2:] == [module(name), "serve"]
        assert procs[name].env["PYTAKE_PORT"] == str(DEFAULT_PORTS[name])
    sim = procs["meta-simulator"].env
    assert sim["PYTAKE_SIMULATOR_WEBHOOK_URL"] == "http://127.0.0.1:8000/webhooks/whatsapp"


def test_services_are_pointed_at_each_other_and_the_simulator(tmp_path):
    env = _cfg(tmp_path).common_env()
    assert env["PYTAKE_GRAPH_API_BASE"] == "http://127.0.0.1:8010"
    assert env["PYTAKE_AUTH_JWKS_URL"] == "http://127.0.0.1:8001/.well-known/jwks.json"
    assert env["PYTAKE_WHATSAPP_URL"] == "http://127.0.0.1:8005"
    assert env["PYTAKE_KAFKA_BOOTSTRAP"] == "127.0.0.1:9092"


def test_real_meta_can_be_configured(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.graph_api_base = "https://graph.facebook.com"
    assert cfg.common_env()["PYTAKE_GRAPH_API_BASE"] == "https://graph.facebook.com"


def test_procfile_names_the_broker_and_every_process(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "STATE", tmp_path)
    path = cli._procfile(_cfg(tmp_path), ["/bin/tansu", "broker"])
    lines = path.read_text().splitlines()
    assert lines[0] == "broker: exec /bin/tansu broker"
    names = [line.split(":", 1)[0] for line in lines[1:]]
    assert sorted(names) == sorted(DEFAULT_PORTS)
    env_file = (tmp_path / "stack.env").read_text()
    assert "PYTAKE_DATABASE_URL=postgresql://postgres@/postgres?host=/tmp/pg" in env_file


def test_without_a_broker_command_none_is_started(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "STATE", tmp_path)
    lines = cli._procfile(_cfg(tmp_path), None).read_text().splitlines()
    assert not any(line.startswith("broker:") for line in lines)


@pytest.mark.parametrize("service", DB_SERVICES)
def test_every_database_service_has_migrations(service):
    import importlib

    pkg = importlib.import_module(module(service))
    versions = Path(pkg.__file__).parent / "migrations" / "versions"
    assert any(versions.glob("*.py"))
