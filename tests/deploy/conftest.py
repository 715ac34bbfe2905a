"""Shared facts and fixtures for the static deployment checks.

Nothing here starts a container or talks to a cluster: the Kustomize overlays
are rendered with ``kubectl kustomize`` and inspected as data.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")

Manifest = dict[str, Any]


@dataclass(frozen=True)
class App:
    """One deployable unit, as fixed by the architecture contract."""

    folder: str  # path from the repository root
    name: str  # Kubernetes/Compose name
    port: int
    has_db: bool = True
    dev_only: bool = False

    @property
    def module(self) -> str:
        return "pytake_" + self.name.replace("-", "_")

    @property
    def package(self) -> str:
        return "pytake-" + self.name

    @property
    def database_env(self) -> str:
        return self.name.upper().replace("-", "_") + "_DATABASE_URL"

    @property
    def cluster(self) -> str:
        """Its CloudNativePG Cluster (one per service that owns data)."""
        return f"pytake-{self.name}-pg"

    @property
    def database(self) -> str:
        return "pytake_" + self.name.replace("-", "_")

    @property
    def database_secret(self) -> str:
        """The Secret CloudNativePG generates for the cluster's owner role."""
        return f"{self.cluster}-app"


APPS = (
    App("services/api-gateway", "api-gateway", 8000, has_db=False),
    App("services/auth", "auth", 8001),
    App("services/tenants", "tenants", 8002),
    App("services/contacts", "contacts", 8003),
    App("services/conversations", "conversations", 8004),
    App("services/whatsapp-gateway", "whatsapp-gateway", 8005),
    App("services/automation", "automation", 8007),
    App("services/integrations", "integrations", 8008),
    App("services/campaigns", "campaigns", 8006),
    App("tools/meta-simulator", "meta-simulator", 8010, has_db=False, dev_only=True),
)

TOPICS = (
    "pytake.auth.user",
    "pytake.auth.session",
    "pytake.tenants.organization",
    "pytake.tenants.department",
    "pytake.contacts.contact",
    "pytake.contacts.tag",
    "pytake.conversations.conversation",
    "pytake.conversations.message",
    "pytake.whatsapp.message",
    "pytake.whatsapp.template",
    "pytake.whatsapp.number",
    "pytake.integrations.endpoint",
    "pytake.automation.rule",
    "pytake.automation.flow",
    "pytake.automation.session",
    "pytake.automation.sla",
    "pytake.automation.csat",
    "pytake.campaigns.campaign",
    "pytake.campaigns.recipient",
)

#: The metric names the services export (pytake_common.metrics and the services).
METRICS = frozenset(
    {
        "pytake_http_requests_total",
        "pytake_http_request_duration_seconds",
        "pytake_outbox_backlog",
        "pytake_outbox_published_total",
        "pytake_outbox_publish_errors_total",
        "pytake_outbox_dead_total",
        "pytake_consumer_lag",
        "pytake_broker_up",
        "pytake_events_consumed_total",
        "pytake_events_dead_lettered_total",
        "pytake_webhook_deliveries_total",
        "pytake_whatsapp_sends_total",
    }
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def known_metric(name: str) -> bool:
    if name in METRICS:
        return True
    return any(
        name.endswith(suffix) and name.removesuffix(suffix) in METRICS
        for suffix in HISTOGRAM_SUFFIXES
    )


def apps_in(overlay: str) -> list[App]:
    return [app for app in APPS if overlay == "dev" or not app.dev_only]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``overlay`` runs once per overlay, ``app`` once per app; together, once
    per app deployed by that overlay (the simulator only in dev)."""
    names = metafunc.fixturenames
    if "overlay" in names and "app" in names:
        pairs = [(o, a) for o in OVERLAYS for a in apps_in(o)]
        metafunc.parametrize(("overlay", "app"), pairs, ids=[f"{o}-{a.name}" for o, a in pairs])
    elif "overlay" in names:
        metafunc.parametrize("overlay", OVERLAYS)
    elif "app" in names:
        metafunc.parametrize("app", APPS, ids=[a.name for a in APPS])


class Rendered:
    """The manifests one ``kubectl kustomize`` produced, with lookups."""

    def __init__(self, path: Path, docs: tuple[Manifest, ...]) -> None:
        self.path = path
        self.docs = docs

    def of_kind(self, kind: str) -> list[Manifest]:
        return [doc for doc in self.docs if doc["kind"] == kind]

    def named(self, kind: str, name: str) -> Manifest:
        matches = [d for d in self.of_kind(kind) if d["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind}/{name} in {self.path}, found {len(matches)}"
        return matches[0]

    def environment(self, kind: str, name: str) -> dict[str, str]:
        """The plain environment of a workload's first container: its ConfigMaps
        (envFrom) overlaid with its literal ``env`` values."""
        container = self.named(kind, name)["spec"]["template"]["spec"]["containers"][0]
        configs = {c["metadata"]["name"]: c.get("data", {}) for c in self.of_kind("ConfigMap")}
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            env |= configs[source["configMapRef"]["name"]]
        env |= {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        return env

    def pod_specs(self) -> Iterator[tuple[str, Manifest]]:
        """(``Kind/name``, pod spec) for every workload that runs pods."""
        for doc in self.docs:
            if doc["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"}:
                yield f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]["spec"]

    @staticmethod
    def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
        """Kubernetes label-selector semantics (matchLabels + matchExpressions)."""
        if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
            return False
        checks: dict[str, Callable[[str | None, list[str]], bool]] = {
            "In": lambda v, vs: v in vs,
            "NotIn": lambda v, vs: v not in vs,
            "Exists": lambda v, _: v is not None,
            "DoesNotExist": lambda v, _: v is None,
        }
        return all(
            checks[e["operator"]](labels.get(e["key"]), e.get("values") or [])
            for e in selector.get("matchExpressions") or []
        )


@cache
def render(path: Path) -> Rendered:
    """``kubectl kustomize <path>``, parsed (once per session)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the Kustomize overlays cannot be rendered")
    result = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return Rendered(path, tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc))


@pytest.fixture
def manifests(overlay: str) -> Rendered:
    return render(K8S / "overlays" / overlay)


@pytest.fixture
def render_kustomization() -> Callable[[Path], Rendered]:
    return render


@pytest.fixture
def metric_is_known() -> Callable[[str], bool]:
    return known_metric


@pytest.fixture
def topics() -> tuple[str, ...]:
    return TOPICS


@pytest.fixture
def apps() -> tuple[App, ...]:
    return APPS
