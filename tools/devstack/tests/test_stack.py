"""The stack description that `make run` (honcho) and the end-to-end tests both start."""

from pathlib import Path

import pytest

import pytake_devstack.__main__ as cli
from pytake_devstack import stack
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


def test_the_sender_is_started_ahead_of_the_rest_when_the_launcher_may(tmp_path, monkeypatch):
    monkeypatch.delenv("PYTAKE_PROCESS_NICE", raising=False)
    monkeypatch.setattr(stack.os, "geteuid", lambda: 0)
    niceness = {p.name: p.env.get("PYTAKE_PROCESS_NICE") for p in processes(_cfg(tmp_path))}
    assert niceness.pop("whatsapp-gateway") == "-10"
    assert set(niceness.values()) == {None}
    # Not root: a negative niceness would only be refused.
    monkeypatch.setattr(stack.os, "geteuid", lambda: 1000)
    assert all("PYTAKE_PROCESS_NICE" not in p.env for p in processes(_cfg(tmp_path)))
    # The environment's own setting wins (PYTAKE_PROCESS_NICE=0 for an A/B).
    monkeypatch.setattr(stack.os, "geteuid", lambda: 0)
    monkeypatch.setenv("PYTAKE_PROCESS_NICE", "0")
    assert all("PYTAKE_PROCESS_NICE" not in p.env for p in processes(_cfg(tmp_path)))


def test_real_meta_can_be_configured(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.graph_api_base = "https://graph.facebook.com"
    assert cfg.common_env()["PYTAKE_GRAPH_API_BASE"] == "https://graph.facebook.com"


def test_procfile_names_every_process_and_no_broker(tmp_path, monkeypatch):
    monkeypatch.setattr(cli, "STATE", tmp_path)
    path = cli._procfile(_cfg(tmp_path))
    lines = path.read_text().splitlines()
    names = [line.split(":", 1)[0] for line in lines]
    assert sorted(names) == sorted(DEFAULT_PORTS)  # the broker runs beside honcho
    env_file = (tmp_path / "stack.env").read_text()
    assert "PYTAKE_DATABASE_URL=postgresql://postgres@/postgres?host=/tmp/pg" in env_file


@pytest.mark.parametrize("service", DB_SERVICES)
def test_every_database_service_has_migrations(service):
    import importlib

    pkg = importlib.import_module(module(service))
    versions = Path(pkg.__file__).parent / "migrations" / "versions"
    assert any(versions.glob("*.py"))


def test_local_broker_starts_with_the_domain_topics_on_one_thread():
    import asyncio

    from aiokafka import AIOKafkaConsumer

    from pytake_devstack.infra import (
        LOCAL_BROKER_THREADS,
        LOCAL_PARTITIONS,
        TansuBroker,
        domain_topics,
    )

    topics = domain_topics()
    assert "pytake.campaigns.recipient" in topics and "pytake.auth.session" in topics
    broker = TansuBroker()
    bootstrap = broker.start()
    try:

        async def partitions() -> dict[str, int]:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
            await consumer.start()
            try:
                await consumer.topics()
                return {t: len(consumer.partitions_for_topic(t) or ()) for t in topics}
            finally:
                await consumer.stop()

        assert asyncio.run(partitions()) == dict.fromkeys(topics, LOCAL_PARTITIONS)
        assert broker.proc is not None
        environ = Path(f"/proc/{broker.proc.pid}/environ").read_bytes().split(b"\0")
        assert f"TOKIO_WORKER_THREADS={LOCAL_BROKER_THREADS}".encode() in environ
    finally:
        broker.stop()


def test_a_local_broker_whose_topics_cannot_be_made_is_stopped(monkeypatch):
    from pytake_devstack import infra

    def refuse(*_args, **_kwargs):
        raise RuntimeError("no topics")

    monkeypatch.setattr(infra, "create_topics", refuse)
    broker = infra.TansuBroker()
    with pytest.raises(RuntimeError, match="no topics"):
        broker.start()
    assert broker.proc is None  # stopped, not left running in its own session
