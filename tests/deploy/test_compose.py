"""docker-compose.yml: parses, runs every app, and gates start-up on health."""

from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def load():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]


def test_compose_names_every_app_folder(apps):
    services = load()
    folders = {
        p.parent.relative_to(REPO).as_posix() for p in REPO.glob("services/*/pyproject.toml")
    }
    folders.add("tools/meta-simulator")
    assert folders == {app.folder for app in apps}, "the contract's app list is out of date"
    built = {s["build"]["args"]["PACKAGE"] for s in services.values() if "build" in s}
    assert built == {app.package for app in apps}
    for app in apps:
        service = services[app.name]
        assert service["build"]["context"] == "."
        assert "dockerfile" not in service["build"], "one Dockerfile at the root"
        assert service["environment"]["PYTAKE_PORT"] == str(app.port)


def test_infrastructure():
    services = load()
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "broker,controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
    for name in ("postgres", "kafka"):
        assert services[name]["healthcheck"]["test"], name


def test_start_up_is_gated_by_health(apps):
    services = load()
    for app in apps:
        service = services[app.name]
        assert service["healthcheck"]["test"], app.name
        depends = service.get("depends_on", {})
        if app.has_db:
            migrate = services[f"{app.name}-migrate"]
            assert migrate["command"] == ["python", "-m", app.module, "migrate"]
            assert migrate["depends_on"] == {"postgres": {"condition": "service_healthy"}}
            assert migrate["restart"] == "no"
            assert depends[f"{app.name}-migrate"] == {"condition": "service_completed_successfully"}
            assert depends["kafka"] == {"condition": "service_healthy"}
    gateway = services["api-gateway"]
    assert gateway["ports"] == ["8000:8000"]
    assert services["meta-simulator"]["ports"] == ["8010:8010"]
    for app in apps:
        if app.name not in {"api-gateway", "meta-simulator"}:
            assert gateway["depends_on"][app.name] == {"condition": "service_healthy"}


def test_apps_run_hardened_with_dev_only_secrets(apps):
    services = load()
    text = (REPO / "docker-compose.yml").read_text()
    assert "DEV ONLY" in text
    for app in apps:
        service = services[app.name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        env = service["environment"]
        assert env["PYTAKE_ENV"] == "dev", "compose credentials are dev-only"
        assert "dev-only" in env["PYTAKE_SECRET_KEY"]
        assert env["PYTAKE_KAFKA_IDEMPOTENT_PRODUCER"] == "true"
