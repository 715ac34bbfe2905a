"""The Kustomize tree renders, and each overlay deploys what the contract says."""

from pathlib import Path

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
CLUSTER_SCOPED = {"Namespace"}


def test_base_renders_on_its_own(render_kustomization):
    base = render_kustomization(K8S / "base")
    assert {d["metadata"]["name"] for d in base.of_kind("Deployment")} == {
        "api-gateway",
        "auth",
        "tenants",
        "contacts",
        "conversations",
        "whatsapp-gateway",
        "integrations",
        "campaigns",
        "automation",
    }


def test_overlay_renders_into_one_namespace(overlay, manifests):
    namespaces = manifests.of_kind("Namespace")
    assert len(namespaces) == 1
    namespace = namespaces[0]["metadata"]["name"]
    seen = set()
    for doc in manifests.docs:
        meta = doc["metadata"]
        key = (doc["apiVersion"].split("/")[0], doc["kind"], meta["name"])
        assert key not in seen, f"duplicate {key}"
        seen.add(key)
        assert doc["kind"] != "ServiceValues", "template values leaked into the output"
        assert "pytake-service" not in str(doc), f"unfilled placeholder in {key}"
        if doc["kind"] not in CLUSTER_SCOPED:
            assert meta.get("namespace") == namespace, key


def test_simulator_is_dev_only(overlay, manifests):
    deployments = {d["metadata"]["name"] for d in manifests.of_kind("Deployment")}
    assert ("meta-simulator" in deployments) is (overlay == "dev")


def test_service_shape(overlay, app, manifests):
    """Each app: Deployment + Service on its port, its image, its database wiring."""
    deployment = manifests.named("Deployment", app.name)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].split(":")[0].endswith(f"pytake/{app.name}")
    assert container["ports"][0] == {"name": "http", "containerPort": app.port, "protocol": "TCP"}
    # Only api-gateway has a second, internal listener (/metrics, /readyz).
    assert [p["name"] for p in container["ports"]] == (
        ["http", "internal"] if app.name == "api-gateway" else ["http"]
    )
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["PYTAKE_PORT"]["value"] == str(app.port)

    service = manifests.named("Service", app.name)
    assert service["spec"]["ports"][0]["port"] == app.port
    assert service["spec"]["ports"][0]["targetPort"] == "http"

    jobs = {j["metadata"]["name"]: j for j in manifests.of_kind("Job")}
    if not app.has_db:
        assert f"{app.name}-migrate" not in jobs
        assert not any(name.endswith("_DATABASE_URL") for name in env)
        return
    ref = env[app.database_env]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": app.database_secret, "key": "uri"}
    job = jobs[f"{app.name}-migrate"]
    job_container = job["spec"]["template"]["spec"]["containers"][0]
    assert job_container["command"] == ["python", "-m", app.module, "migrate"]
    assert job_container["image"] == container["image"]
    job_env = {e["name"]: e for e in job_container["env"]}
    assert job_env[app.database_env]["valueFrom"]["secretKeyRef"] == ref


def test_config_points_at_real_services(overlay, manifests):
    (config,) = manifests.of_kind("ConfigMap")
    data = config["data"]
    ports = {
        s["metadata"]["name"]: s["spec"]["ports"][0]["port"] for s in manifests.of_kind("Service")
    }
    for key in ("AUTH", "TENANTS", "CONTACTS", "CONVERSATIONS", "WHATSAPP"):
        url = data[f"PYTAKE_{key}_URL"]
        host, port = url.removeprefix("http://").split(":")
        assert ports[host] == int(port), url
    assert data["PYTAKE_AUTH_JWKS_URL"] == f"http://auth:{ports['auth']}/.well-known/jwks.json"
    assert data["PYTAKE_GATEWAY_PORT"] == str(ports["api-gateway"])
    assert data["PYTAKE_HOST"] == "0.0.0.0"
    kafka = manifests.named("Kafka", "pytake-kafka")
    listener = kafka["spec"]["kafka"]["listeners"][0]
    assert data["PYTAKE_KAFKA_BOOTSTRAP"] == f"pytake-kafka-kafka-bootstrap:{listener['port']}"
    assert data["PYTAKE_KAFKA_IDEMPOTENT_PRODUCER"] == "true"


def test_prod_overlay(render_kustomization):
    prod = render_kustomization(K8S / "overlays" / "prod")
    (config,) = prod.of_kind("ConfigMap")
    assert config["data"]["PYTAKE_ENV"] == "prod"
    assert config["data"]["PYTAKE_GRAPH_API_BASE"] == "https://graph.facebook.com"
    for hpa in prod.of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] >= 3
    (pool,) = prod.of_kind("KafkaNodePool")
    assert pool["spec"]["replicas"] >= 3
    clusters = prod.of_kind("Cluster")
    assert len(clusters) == 8  # one per service with a database
    for cluster in clusters:
        assert cluster["spec"]["instances"] >= 3, cluster["metadata"]["name"]
        assert cluster["spec"]["postgresql"]["synchronous"]["number"] >= 1
    for deployment in prod.of_kind("Deployment"):
        assert not deployment["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":dev")


def test_dev_overlay(render_kustomization):
    dev = render_kustomization(K8S / "overlays" / "dev")
    (config,) = dev.of_kind("ConfigMap")
    assert config["data"]["PYTAKE_ENV"] == "dev"
    assert config["data"]["PYTAKE_GRAPH_API_BASE"] == "http://meta-simulator:8010"
    for hpa in dev.of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"] == 1
    for deployment in dev.of_kind("Deployment"):
        requests = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        assert requests["memory"] == "128Mi"
    for topic in dev.of_kind("KafkaTopic"):
        assert topic["spec"]["replicas"] == 1
    for cluster in dev.of_kind("Cluster"):
        assert cluster["spec"]["instances"] == 1, cluster["metadata"]["name"]
        assert "synchronous" not in cluster["spec"]["postgresql"]
