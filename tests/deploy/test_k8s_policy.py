"""Operational policy every rendered overlay must meet: hardened pods, probes,
resources, secrets only by reference, autoscaling and disruption budgets,
default-deny networking, and monitoring for every service."""

import ipaddress
import json
import math
import re
from pathlib import Path

import pytest

from pytake_common.rawpg import READ_POOL_SIZE
from pytake_contacts.app import LIST_READS
from pytake_whatsapp_gateway.app import INTAKE_WRITES as WGW_INTAKE_WRITES

#: Names whose value is a secret, by suffix (PYTAKE_PASSWORD_HASH_CONCURRENCY is not).
SENSITIVE = re.compile(r"(SECRET|PASSWORD|TOKEN|KEY|CREDENTIALS?|DATABASE_URL|URI|DSN)$", re.I)
UID = 10001
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def test_pods_are_hardened(overlay, manifests):
    specs = list(manifests.pod_specs())
    assert specs
    for where, pod in specs:
        pod_sc = pod.get("securityContext", {})
        assert pod.get("automountServiceAccountToken") is False, where
        mounts_tmp = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for container in pod["containers"] + pod.get("initContainers", []):
            sc = container.get("securityContext", {})
            here = f"{where}/{container['name']}"

            def effective(key, sc=sc, pod_sc=pod_sc):
                return sc.get(key, pod_sc.get(key))

            assert effective("runAsNonRoot") is True, here
            assert effective("runAsUser") == UID, here
            assert effective("seccompProfile") == {"type": "RuntimeDefault"}, here
            assert sc.get("readOnlyRootFilesystem") is True, here
            assert sc.get("allowPrivilegeEscalation") is False, here
            assert sc.get("privileged", False) is False, here
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], here
            assert not sc.get("capabilities", {}).get("add"), here
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and tmp[0]["name"] in mounts_tmp, f"{here}: /tmp must be an emptyDir"


def test_containers_have_requests_and_limits(overlay, manifests):
    for where, pod in manifests.pod_specs():
        for container in pod["containers"]:
            resources = container.get("resources", {})
            for bound in ("requests", "limits"):
                assert {"cpu", "memory"} <= resources.get(bound, {}).keys(), f"{where} {bound}"


def test_deployments_have_probes_and_graceful_shutdown(overlay, manifests):
    deployments = manifests.of_kind("Deployment")
    assert deployments
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod.get("terminationGracePeriodSeconds", 0) >= 10, name
        container = pod["containers"][0]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz", name
        readiness = container["readinessProbe"]["httpGet"]["path"]
        # The gateway's /readyz aggregates its upstreams (see its kustomization);
        # the simulator has no dependencies.
        liveness_only = {"api-gateway", "meta-simulator"}
        assert readiness == ("/healthz" if name in liveness_only else "/readyz"), name
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["port"] == "http", f"{name} {probe}"
        pre_stop = container["lifecycle"]["preStop"]
        assert pre_stop.get("exec", {}).get("command", [None])[0] == "sleep" or "sleep" in pre_stop
        assert "replicas" not in deployment["spec"], f"{name}: the HPA owns replicas"


def test_secrets_only_by_reference(overlay, manifests):
    assert not manifests.of_kind("Secret"), "Secrets are created out of band, never rendered"
    for where, pod in manifests.pod_specs():
        for container in pod["containers"] + pod.get("initContainers", []):
            for source in container.get("envFrom", []):
                assert set(source) == {"configMapRef"}, f"{where}: envFrom {source}"
            for env in container.get("env", []):
                here = f"{where}: {env['name']}"
                if "value" in env:
                    assert not SENSITIVE.search(env["name"]), f"{here} must be a secretKeyRef"
                else:
                    (kind,) = env["valueFrom"]
                    assert kind in {"secretKeyRef", "configMapKeyRef", "fieldRef"}, here
                    if SENSITIVE.search(env["name"]):
                        assert kind == "secretKeyRef", here
    for config in manifests.of_kind("ConfigMap"):
        for key, value in config.get("data", {}).items():
            assert not SENSITIVE.search(key), f"ConfigMap key {key} looks secret"
            assert not re.search(r"://[^/@\s]+:[^/@\s]+@", value), f"credentials in {key}"


def test_secret_key_and_database_urls_come_from_the_expected_secrets(overlay, manifests):
    for where, pod in manifests.pod_specs():
        env = {e["name"]: e for e in pod["containers"][0].get("env", [])}
        ref = env["PYTAKE_SECRET_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "pytake-secrets", "key": "secret-key"}, where
        for name, entry in env.items():
            if name.endswith("_DATABASE_URL"):
                ref = entry["valueFrom"]["secretKeyRef"]
                assert re.fullmatch(r"pytake-[a-z-]+-pg-app", ref["name"]), where
                assert ref["key"] == "uri", where


def test_every_deployment_has_hpa_pdb_and_service_account(overlay, manifests):
    hpas = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in manifests.of_kind("HorizontalPodAutoscaler")
    }
    pdbs = manifests.of_kind("PodDisruptionBudget")
    accounts = {a["metadata"]["name"]: a for a in manifests.of_kind("ServiceAccount")}
    for deployment in manifests.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        hpa = hpas.get(name)
        assert hpa and hpa["apiVersion"] == "autoscaling/v2", f"{name}: no autoscaling/v2 HPA"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        covering = [p for p in pdbs if manifests.selects(p["spec"]["selector"], pod_labels)]
        assert len(covering) == 1, f"{name}: {len(covering)} PodDisruptionBudgets"
        assert covering[0]["apiVersion"] == "policy/v1"
        account = accounts[deployment["spec"]["template"]["spec"]["serviceAccountName"]]
        assert account.get("automountServiceAccountToken") is False, name


def test_network_policies_default_deny_plus_allows(overlay, manifests):
    policies = manifests.of_kind("NetworkPolicy")
    deny = [
        p
        for p in policies
        if p["spec"]["podSelector"] == {}
        and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default deny-all NetworkPolicy"

    def allowed_from(pod_labels):
        """The `from` peers of every policy that selects these pods."""
        return [
            peer
            for p in policies
            if manifests.selects(p["spec"]["podSelector"], pod_labels)
            for rule in p["spec"].get("ingress", [])
            for peer in rule.get("from", [])
        ]

    def labels(name):
        return manifests.named("Deployment", name)["spec"]["template"]["metadata"]["labels"]

    gateway = labels("api-gateway")
    peers = allowed_from(gateway)
    assert any(
        p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
        == "ingress-nginx"
        for p in peers
    ), "ingress controller cannot reach api-gateway"
    for deployment in manifests.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        if name in {"api-gateway", "meta-simulator"}:
            continue
        peers = allowed_from(labels(name))
        assert any(
            "podSelector" in p and manifests.selects(p["podSelector"], gateway) for p in peers
        ), f"api-gateway cannot reach {name}"


def reachable(manifests, source, target, port):
    """Whether the namespace's NetworkPolicies let pods labelled ``source`` open
    TCP ``port`` on pods labelled ``target`` (same namespace; a default deny is
    asserted separately). Both the source's egress and the target's ingress
    must allow it."""
    policies = manifests.of_kind("NetworkPolicy")

    def port_allowed(rule):
        ports = rule.get("ports")
        return not ports or any(p.get("port") in {port, None} for p in ports)

    def peer_is(peer, labels):
        if "podSelector" not in peer or "namespaceSelector" in peer:
            return False  # other namespaces, or an ipBlock: not a pod here
        return manifests.selects(peer["podSelector"], labels)

    def allows(direction, selected, other, peers_key):
        return any(
            port_allowed(rule)
            and (peers_key not in rule or any(peer_is(peer, other) for peer in rule[peers_key]))
            for p in policies
            if direction in p["spec"].get("policyTypes", [])
            and manifests.selects(p["spec"]["podSelector"], selected)
            for rule in p["spec"].get(direction.lower(), [])
        )

    return allows("Egress", source, target, "to") and allows("Ingress", target, source, "from")


def postgres_pod(cluster):
    """The labels CloudNativePG puts on an instance pod of ``cluster``."""
    return {"cnpg.io/cluster": cluster, "cnpg.io/podRole": "instance", "role": "primary"}


def test_each_service_reaches_only_its_own_database(overlay, manifests, apps):
    clusters = [a.cluster for a in apps if a.has_db]
    assert {c["metadata"]["name"] for c in manifests.of_kind("Cluster")} == set(clusters)
    for kind in ("Deployment", "Job"):
        for workload in manifests.of_kind(kind):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            name = labels["app.kubernetes.io/name"]
            for cluster in clusters:
                own = cluster == f"pytake-{name}-pg"
                assert reachable(manifests, labels, postgres_pod(cluster), 5432) is own, (
                    f"{kind}/{workload['metadata']['name']} -> {cluster}"
                )
    for cluster in clusters:
        replica = postgres_pod(cluster) | {"role": "replica"}
        assert reachable(manifests, replica, postgres_pod(cluster), 5432), f"{cluster} replication"
        for other in clusters:
            if other != cluster:
                assert not reachable(manifests, replica, postgres_pod(other), 5432)


def test_services_reach_kafka(overlay, manifests):
    broker = {"strimzi.io/cluster": "pytake-kafka", "strimzi.io/kind": "Kafka"}
    for deployment in manifests.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if labels["app.kubernetes.io/name"] == "meta-simulator":
            continue
        # Strimzi writes the brokers' ingress policy (networkPolicyPeers): check egress.
        egress = [
            peer
            for p in manifests.of_kind("NetworkPolicy")
            if "Egress" in p["spec"].get("policyTypes", [])
            and manifests.selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get("egress", [])
            if any(port.get("port") == 9092 for port in rule.get("ports", []))
            for peer in rule.get("to", [])
        ]
        assert any(manifests.selects(p.get("podSelector", {}), broker) for p in egress), deployment[
            "metadata"
        ]["name"]


def test_every_service_is_scraped(overlay, manifests):
    monitors = manifests.of_kind("ServiceMonitor")
    for service in manifests.of_kind("Service"):
        if service["metadata"]["name"] == "meta-simulator":
            continue  # dev-only stand-in for Meta: exports no metrics
        covering = [
            m
            for m in monitors
            if manifests.selects(m["spec"]["selector"], service["metadata"]["labels"])
        ]
        assert len(covering) == 1, service["metadata"]["name"]
        ports = {p["name"] for p in service["spec"]["ports"]}
        assert {e["port"] for e in covering[0]["spec"]["endpoints"]} <= ports


def ingress_location(manifests, host, path):
    """The (Ingress, path rule) ingress-nginx serves ``path`` of ``host`` with:
    an Exact rule first, else the longest Prefix rule (whole segments)."""
    candidates = []
    for ingress in manifests.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            if rule["host"] != host:
                continue
            for entry in rule["http"]["paths"]:
                prefix, kind = entry["path"], entry["pathType"]
                if kind == "Exact" and path == prefix:
                    return ingress, entry
                segments = prefix.rstrip("/")
                if kind == "Prefix" and (
                    prefix == "/" or path == segments or path.startswith(segments + "/")
                ):
                    candidates.append((len(segments), ingress, entry))
    assert candidates, f"nothing serves {host}{path}"
    _, ingress, entry = max(candidates, key=lambda c: c[0])
    return ingress, entry


def mebibytes(size):
    units = {"k": 1 / 1024, "m": 1, "g": 1024}
    return float(size[:-1]) * units[size[-1].lower()]


#: Paths only Prometheus and operators may call (docs/operations.md): the gateway
#: serves them on its internal port; the Ingress refuses them as a second line.
INTERNAL_PATHS = ("/metrics", "/readyz", "/metrics/x")


def test_ingress_exposes_only_the_gateway(overlay, manifests):
    ingresses = manifests.of_kind("Ingress")
    hosts = {r["host"] for i in ingresses for r in i["spec"]["rules"]}
    assert len(hosts) == 1, hosts
    for ingress in ingresses:
        assert ingress["spec"]["ingressClassName"] == "nginx"
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["name"] == "api-gateway", path
        assert ingress["spec"].get("tls") == ingresses[0]["spec"].get("tls"), "one certificate"


def test_ingress_body_limits_agree_with_the_services(overlay, manifests):
    """The contact import takes 64 MiB end to end; every other path keeps 3 MiB."""
    from pytake_api_gateway.config import Settings as GatewaySettings
    from pytake_contacts.config import Settings as ContactsSettings

    (host,) = {r["host"] for i in manifests.of_kind("Ingress") for r in i["spec"]["rules"]}
    annotation = "nginx.ingress.kubernetes.io/proxy-body-size"
    imports, _ = ingress_location(manifests, host, "/v1/contacts/import")
    limit = ContactsSettings.model_fields["import_max_bytes"].default
    assert GatewaySettings.model_fields["import_body_limit_bytes"].default == limit
    assert mebibytes(imports["metadata"]["annotations"][annotation]) * 2**20 >= limit
    assert (
        imports["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-request-buffering"]
        == "off"
    )
    for path in ("/v1/contacts", "/v1/contacts/import/x", "/v1/auth/login", "/webhooks/whatsapp"):
        ingress, _ = ingress_location(manifests, host, path)
        assert ingress["metadata"]["annotations"][annotation] == "3m", path


def test_internal_paths_are_refused_at_the_ingress(overlay, manifests):
    (host,) = {r["host"] for i in manifests.of_kind("Ingress") for r in i["spec"]["rules"]}
    for path in INTERNAL_PATHS:
        ingress, _ = ingress_location(manifests, host, path)
        annotations = ingress["metadata"].get("annotations", {})
        denied = annotations.get("nginx.ingress.kubernetes.io/denylist-source-range", "")
        assert {"0.0.0.0/0", "::/0"} <= {d.strip() for d in denied.split(",")}, path
    # The gateway's /docs and /openapi.json describe only the routed API: public.
    for path in ("/v1/contacts", "/webhooks/whatsapp", "/healthz", "/v1/stream", "/docs"):
        ingress, _ = ingress_location(manifests, host, path)
        assert "nginx.ingress.kubernetes.io/denylist-source-range" not in ingress["metadata"].get(
            "annotations", {}
        ), path


def test_every_topic_and_dlq_exists(overlay, manifests, topics):
    declared = {t["metadata"]["name"]: t for t in manifests.of_kind("KafkaTopic")}
    assert set(declared) == set(topics) | {f"{t}.dlq" for t in topics}
    (pool,) = manifests.of_kind("KafkaNodePool")
    assert "broker" in pool["spec"]["roles"]
    brokers = pool["spec"]["replicas"]
    max_pods = max(h["spec"]["maxReplicas"] for h in manifests.of_kind("HorizontalPodAutoscaler"))
    for name, topic in declared.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "pytake-kafka"
        assert topic["spec"]["replicas"] <= brokers, name
        if not name.endswith(".dlq"):
            # Otherwise pods beyond the partition count sit idle in their group.
            assert topic["spec"]["partitions"] >= max_pods, name


def pool_size(app):
    """The SQLAlchemy pool size the service's create_app gives its Database."""
    if app.name == "whatsapp-gateway":
        from pytake_whatsapp_gateway.app import database_pool_size
        from pytake_whatsapp_gateway.config import Settings

        return database_pool_size(Settings.model_construct())
    return 10


#: Connections a pod holds besides its SQLAlchemy pool and the outbox relay's two.
EXTRA_CONNECTIONS = {
    "contacts": LIST_READS,  # its TenantReads
    "conversations": READ_POOL_SIZE + 1,  # TenantReads + the stream's LISTEN
    # the send dispatcher's LISTEN, the template sync leader, the webhook intake's raw pool
    # and its directory of numbers' LISTEN
    "whatsapp-gateway": 1 + 1 + WGW_INTAKE_WRITES + 1,
}


def surge(deployment, replicas: int) -> int:
    """Pods a rolling update may add above ``replicas`` (Kubernetes rounds a
    percentage up; the default is 25%)."""
    strategy = deployment["spec"].get("strategy", {})
    if strategy.get("type") == "Recreate":
        return 0
    value = strategy.get("rollingUpdate", {}).get("maxSurge", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(replicas * int(value[:-1]) / 100)
    return int(value)


def connections_at_most(manifests, app) -> int:
    """The most connections ``app``'s pods and its migration Job hold at once."""
    hpa = next(
        h
        for h in manifests.of_kind("HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == app.name
    )
    replicas = hpa["spec"]["maxReplicas"]
    pods = replicas + surge(manifests.named("Deployment", app.name), replicas)
    per_pod = 2 * pool_size(app) + 2 + EXTRA_CONNECTIONS.get(app.name, 0)
    # `migrate` opens one connection at a time (create-database check, then Alembic).
    job = manifests.named("Job", f"{app.name}-migrate")
    return pods * per_pod + job["spec"].get("parallelism", 1)


def test_the_budget_counts_the_surge_and_the_job(render_kustomization, apps):
    """The arithmetic above, on the shipped numbers: prod's 6 pods of auth may be 7
    during a rollout (maxSurge 1), each 22 connections, plus the Job's one."""
    prod = render_kustomization(K8S / "overlays" / "prod")
    auth = next(a for a in apps if a.name == "auth")
    assert connections_at_most(prod, auth) == 7 * 22 + 1
    deployment = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%"}}}}
    assert surge(deployment, 6) == 2 and surge({"spec": {}}, 4) == 1


def test_every_database_service_has_its_own_cluster(overlay, app, manifests):
    if not app.has_db:
        assert not any(
            e["name"].endswith("_DATABASE_URL")
            for e in manifests.named("Deployment", app.name)["spec"]["template"]["spec"][
                "containers"
            ][0].get("env", [])
        )
        return
    cluster = manifests.named("Cluster", app.cluster)
    spec = cluster["spec"]
    initdb = spec["bootstrap"]["initdb"]
    assert initdb["database"] == initdb["owner"] == app.database
    # Row-level security: pytake_app exists from bootstrap on and the owner may
    # SET ROLE to it, so `migrate` (no CREATEROLE) never has to create or grant it.
    assert initdb["postInitApplicationSQL"] == [
        "CREATE ROLE pytake_app NOLOGIN",
        f"GRANT pytake_app TO {app.database}",
    ]
    roles = {r["name"]: r for r in spec["managed"]["roles"]}
    assert roles["pytake_app"]["login"] is False
    owner = roles[app.database]
    assert owner["login"] is True and "pytake_app" in owner["inRoles"]
    assert "passwordSecret" not in owner, "the owner keeps CloudNativePG's generated password"
    assert spec.get("enableSuperuserAccess") is False
    # Connection budget: every pod that can run at once (the HPA's maximum plus
    # the rolling update's surge on top of it), each with its pool and overflow,
    # the outbox relay's own two connections and its service's own
    # (EXTRA_CONNECTIONS), plus the migration Job's pods (one connection each),
    # fit under the owner's limit, which leaves room under max_connections for
    # the operator, replication and backups.
    needed = connections_at_most(manifests, app)
    limit = owner["connectionLimit"]
    assert needed <= limit, f"{overlay}: {app.name} may open {needed} > {limit}"
    assert limit <= int(spec["postgresql"]["parameters"]["max_connections"]) - 20
    for kind, name in (("Deployment", app.name), ("Job", f"{app.name}-migrate")):
        env = {
            e["name"]: e
            for e in manifests.named(kind, name)["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        ref = env[app.database_env]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": app.database_secret, "key": "uri"}, f"{kind}/{name}"


def test_postgres_is_monitored_and_backed_up(overlay, manifests, apps):
    monitors = manifests.of_kind("PodMonitor")
    backups = {b["spec"]["cluster"]["name"]: b for b in manifests.of_kind("ScheduledBackup")}
    stores = {s["metadata"]["name"] for s in manifests.of_kind("ObjectStore")}
    for app in apps:
        if not app.has_db:
            continue
        covering = [
            m
            for m in monitors
            if manifests.selects(m["spec"]["selector"], postgres_pod(app.cluster))
        ]
        assert len(covering) == 1, f"{app.cluster}: {len(covering)} PodMonitors"
        assert {e["port"] for e in covering[0]["spec"]["podMetricsEndpoints"]} == {"metrics"}
        spec = manifests.named("Cluster", app.cluster)["spec"]
        if overlay == "dev":
            assert "plugins" not in spec and not backups, "dev has no object store"
            continue
        (plugin,) = spec["plugins"]
        assert plugin["name"] == "barman-cloud.cloudnative-pg.io"
        assert plugin["isWALArchiver"] is True
        assert plugin["parameters"]["barmanObjectName"] in stores
        backup = backups[app.cluster]["spec"]
        assert backup["method"] == "plugin"
        assert backup["pluginConfiguration"]["name"] == plugin["name"]


def test_media_store_is_shared_when_whatsapp_gateway_scales(overlay, manifests):
    """With local storage a media file lives on the pod that fetched it; once
    whatsapp-gateway may run several pods, downloads need one shared S3 store."""
    hpa = next(
        h
        for h in manifests.of_kind("HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == "whatsapp-gateway"
    )
    deployment = next(
        d for d in manifests.of_kind("Deployment") if d["metadata"]["name"] == "whatsapp-gateway"
    )
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    storage = env.get("PYTAKE_MEDIA_STORAGE", {}).get("value", "local")
    if hpa["spec"]["maxReplicas"] == 1:
        return
    assert storage == "s3", f"{overlay}: {hpa['spec']['maxReplicas']} pods but {storage} media"
    assert env["PYTAKE_MEDIA_S3_BUCKET"].get("value"), overlay
    keys = ("PYTAKE_MEDIA_S3_ACCESS_KEY_ID", "PYTAKE_MEDIA_S3_SECRET_ACCESS_KEY")
    refs = [env[k]["valueFrom"]["secretKeyRef"] for k in keys if k in env]
    # Both from one Secret, and optional so IRSA / instance roles work without it.
    assert len(refs) in (0, 2), overlay
    assert len({r["name"] for r in refs}) <= 1 and all(r.get("optional") for r in refs), overlay


def test_connection_poolers_keep_sessions(overlay, manifests):
    """Read pools stay bound to an organization between reads, and the outbox relay
    LISTENs: a transaction-mode pooler would mix tenants' sessions (docs/operations.md)."""
    for pooler in manifests.of_kind("Pooler"):
        mode = pooler["spec"].get("pgbouncer", {}).get("poolMode", "session")
        assert mode == "session", f"{overlay}: Pooler {pooler['metadata']['name']} is {mode}"


#: ingress-nginx's default ``upstream-keepalive-timeout`` (its ConfigMap; docs/operations.md).
INGRESS_UPSTREAM_KEEPALIVE_S = 60


def test_every_server_outlives_the_ingress_keepalive(overlay, manifests):
    """A server that closes idle connections before the proxy pooling them does
    turns some POSTs into 502s: every pod keeps them longer than ingress-nginx."""
    from pytake_common.settings import ServiceSettings

    default = ServiceSettings.model_fields["http_keepalive_s"].default
    for deployment in manifests.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        if name == "meta-simulator":
            continue  # dev-only, not behind the Ingress, started by its own __main__
        env = manifests.environment("Deployment", name)
        keepalive = int(env.get("PYTAKE_HTTP_KEEPALIVE_S", default))
        assert keepalive > INGRESS_UPSTREAM_KEEPALIVE_S, f"{overlay}: {name} keeps {keepalive} s"


def kafka_pod(pool):
    """The labels Strimzi puts on a pod of a KafkaNodePool."""
    return {
        "strimzi.io/cluster": pool["metadata"]["labels"]["strimzi.io/cluster"],
        "strimzi.io/pool-name": pool["metadata"]["name"],
        "strimzi.io/kind": "Kafka",
    }


def test_kafka_survives_losing_one_node(overlay, manifests):
    (kafka,) = manifests.of_kind("Kafka")
    (pool,) = manifests.of_kind("KafkaNodePool")
    nodes = pool["spec"]["replicas"]
    config = kafka["spec"]["kafka"]["config"]
    pairs = [
        ("cluster default", config["default.replication.factor"], config["min.insync.replicas"]),
        (
            "transaction state",
            config["transaction.state.log.replication.factor"],
            config["transaction.state.log.min.isr"],
        ),
        ("consumer offsets", config["offsets.topic.replication.factor"], None),
    ] + [
        (t["metadata"]["name"], t["spec"]["replicas"], t["spec"]["config"]["min.insync.replicas"])
        for t in manifests.of_kind("KafkaTopic")
    ]
    for name, replicas, min_isr in pairs:
        assert replicas <= nodes, f"{overlay}: {name}"
        if nodes == 1:
            assert replicas == 1 and min_isr in (1, None), f"{overlay}: {name}"
            continue
        # One node down leaves replicas - 1 in sync: writes with acks=all go on,
        # and a write is still on two nodes before it is acknowledged.
        assert replicas >= 3, f"{overlay}: {name}"
        if min_isr is not None:
            assert 2 <= min_isr <= replicas - 1, f"{overlay}: {name}"
    if nodes == 1:
        return
    assert "controller" in pool["spec"]["roles"] and nodes % 2 == 1, "a quorum that survives one"
    pod = pool["spec"].get("template", {}).get("pod", {})
    anti = pod.get("affinity", {}).get("podAntiAffinity", {})
    required = anti.get("requiredDuringSchedulingIgnoredDuringExecution", [])
    assert any(
        term["topologyKey"] == "kubernetes.io/hostname"
        and manifests.selects(term["labelSelector"], kafka_pod(pool))
        for term in required
    ), f"{overlay}: two Kafka nodes may share a Kubernetes node"
    rack = kafka["spec"]["kafka"].get("rack", {})
    assert rack.get("topologyKey") == "topology.kubernetes.io/zone", f"{overlay}: no rack awareness"


def egress_to_address(manifests, labels, address, port, protocol="TCP"):
    """Whether the NetworkPolicies let pods labelled ``labels`` send to ``address``
    (outside any pod: matched by ipBlock only) on ``port``/``protocol``."""
    ip = ipaddress.ip_address(address)

    def in_block(block):
        network = ipaddress.ip_network(block["cidr"])
        if ip.version != network.version or ip not in network:
            return False
        return not any(
            ip in ipaddress.ip_network(e)
            for e in block.get("except", [])
            if ipaddress.ip_network(e).version == ip.version
        )

    def port_allowed(rule):
        ports = rule.get("ports")
        return not ports or any(
            p.get("port") in {port, None} and p.get("protocol", "TCP") == protocol for p in ports
        )

    return any(
        port_allowed(rule)
        and (
            "to" not in rule
            or any("ipBlock" in to and in_block(to["ipBlock"]) for to in rule["to"])
        )
        for p in manifests.of_kind("NetworkPolicy")
        if "Egress" in p["spec"].get("policyTypes", [])
        and manifests.selects(p["spec"]["podSelector"], labels)
        for rule in p["spec"].get("egress", [])
    )


#: Where the AWS credential chain asks for credentials without a key Secret.
CREDENTIAL_ENDPOINTS = ("169.254.169.254", "169.254.170.23", "fd00:ec2::254", "fd00:ec2::23")


def test_dns_works_with_nodelocal_dnscache(overlay, manifests):
    for where, _ in manifests.pod_specs():
        kind, name = where.split("/")
        labels = manifests.named(kind, name)["spec"]["template"]["metadata"]["labels"]
        for protocol in ("UDP", "TCP"):
            assert egress_to_address(manifests, labels, "169.254.20.10", 53, protocol), where


def test_s3_credential_endpoints_reach_only_whatsapp_gateway(overlay, manifests):
    """docs/operations.md offers instance roles and EKS Pod Identity for S3 media:
    whatsapp-gateway (the only S3 user) must reach their endpoints, nothing else."""
    for deployment in manifests.of_kind("Deployment"):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        name = deployment["metadata"]["name"]
        for address in CREDENTIAL_ENDPOINTS:
            allowed = egress_to_address(manifests, labels, address, 80)
            assert allowed is (name == "whatsapp-gateway"), f"{overlay}: {name} -> {address}"


def cpu_cores(quantity):
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def hpa_of(manifests, name):
    return next(
        h
        for h in manifests.of_kind("HorizontalPodAutoscaler")
        if h["spec"]["scaleTargetRef"]["name"] == name
    )


def test_gateway_rate_limits_are_divided_by_its_pod_count(overlay, manifests):
    """Each gateway pod enforces ``limit / PYTAKE_RATELIMIT_GATEWAY_REPLICAS`` of an
    organization's rate: that must be the HPA's minimum (scaling out then loosens
    the limit, never tightens it below the plan)."""
    from pytake_api_gateway.config import Settings as GatewaySettings

    default = GatewaySettings.model_fields["ratelimit_gateway_replicas"].default
    env = manifests.environment("Deployment", "api-gateway")
    replicas = int(env.get("PYTAKE_RATELIMIT_GATEWAY_REPLICAS", default))
    assert replicas == hpa_of(manifests, "api-gateway")["spec"]["minReplicas"], overlay


def test_autoscaling_thresholds_fit_one_event_loop(overlay, manifests):
    """The HPA compares usage with the CPU *request*: the point where it scales out
    (request x target) must leave a pod's event loop (one core) room, yet not be so
    low that an idle service runs at its maximum. metrics-server must run."""
    for hpa in manifests.of_kind("HorizontalPodAutoscaler"):
        name = hpa["spec"]["scaleTargetRef"]["name"]
        if hpa["spec"]["minReplicas"] == hpa["spec"]["maxReplicas"]:
            continue  # nothing to scale (dev)
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        target = metric["resource"]["target"]["averageUtilization"] / 100
        container = manifests.named("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        request = cpu_cores(container["resources"]["requests"]["cpu"])
        limit = cpu_cores(container["resources"]["limits"]["cpu"])
        assert request <= limit, name
        assert 0.3 <= request * target <= 0.8, (
            f"{overlay}: {name} scales out at {request * target} cores"
        )


def test_auth_has_a_core_per_concurrent_hash(render_kustomization):
    prod = render_kustomization(K8S / "overlays" / "prod")
    env = prod.environment("Deployment", "auth")
    container = prod.named("Deployment", "auth")["spec"]["template"]["spec"]["containers"][0]
    limit = cpu_cores(container["resources"]["limits"]["cpu"])
    assert int(env["PYTAKE_PASSWORD_HASH_CONCURRENCY"]) <= limit


def test_gateway_metrics_are_scraped_on_its_internal_port(overlay, manifests):
    """The gateway answers /metrics and /readyz only on PYTAKE_GATEWAY_INTERNAL_PORT:
    Prometheus scrapes that port, which the Ingress and its controller never reach."""
    env = manifests.environment("Deployment", "api-gateway")
    deployment = manifests.named("Deployment", "api-gateway")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert int(env["PYTAKE_GATEWAY_INTERNAL_PORT"]) == ports["internal"] != ports["http"]
    service = manifests.named("Service", "api-gateway")
    assert {p["name"]: p["targetPort"] for p in service["spec"]["ports"]}["internal"] == "internal"
    (monitor,) = [
        m
        for m in manifests.of_kind("ServiceMonitor")
        if manifests.selects(m["spec"]["selector"], service["metadata"]["labels"])
    ]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["internal"]
    for ingress in manifests.of_kind("Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                assert path["backend"]["service"]["port"] == {"name": "http"}, path
    labels = deployment["spec"]["template"]["metadata"]["labels"]

    def admitted_from(namespace):
        return {
            port["port"]
            for p in manifests.of_kind("NetworkPolicy")
            if manifests.selects(p["spec"]["podSelector"], labels)
            for rule in p["spec"].get("ingress", [])
            if any(
                f.get("namespaceSelector", {})
                .get("matchLabels", {})
                .get("kubernetes.io/metadata.name")
                == namespace
                for f in rule.get("from", [])
            )
            for port in rule.get("ports", [])
        }

    assert "internal" in admitted_from("monitoring")
    assert admitted_from("ingress-nginx") == {"http"}


def test_the_graph_api_egress_excludes_every_pod_network(overlay, manifests):
    """whatsapp-gateway's "HTTPS anywhere" must not reach a pod: every network the
    configuration believes is the pod network (PYTAKE_TRUSTED_PROXIES) is excepted,
    CGNAT space (100.64.0.0/10, Cilium and others) included."""
    if not manifests.of_kind("NetworkPolicy"):
        pytest.skip(f"{overlay} has no NetworkPolicies")
    env = manifests.environment("Deployment", "auth")
    labels = manifests.named("Deployment", "whatsapp-gateway")["spec"]["template"]["metadata"][
        "labels"
    ]
    for network in json.loads(env["PYTAKE_TRUSTED_PROXIES"]):
        net = ipaddress.ip_network(network)
        for address in (net.network_address + 1, net.broadcast_address - 1):
            assert not egress_to_address(manifests, labels, str(address), 443), (
                f"{overlay}: whatsapp-gateway may send HTTPS to {address} (in {network})"
            )
    assert egress_to_address(manifests, labels, "157.240.0.35", 443)  # graph.facebook.com


def test_auth_believes_forwarded_for_only_from_callers_the_docs_name(overlay, manifests):
    """auth believes X-Forwarded-For from the private ranges; in Kubernetes that is
    safe only as far as the callers admitted to its port are the ones docs/operations.md
    ("Who auth believes") names: api-gateway, PyTake server pods (the JWKS shares the
    port) and Prometheus' namespace (/metrics). No ipBlock, no other namespace, no Job."""
    if not manifests.of_kind("NetworkPolicy"):
        pytest.skip(f"{overlay} has no NetworkPolicies")
    auth = manifests.named("Deployment", "auth")["spec"]["template"]["metadata"]["labels"]
    callers = []
    for policy in manifests.of_kind("NetworkPolicy"):
        spec = policy["spec"]
        if "Ingress" not in spec.get("policyTypes", []) or not manifests.selects(
            spec["podSelector"], auth
        ):
            continue
        for rule in spec.get("ingress", []):
            assert "from" in rule, f"{overlay}: {policy['metadata']['name']} admits anyone"
            callers += rule["from"]
    server = {"app.kubernetes.io/component": "server"}
    for caller in callers:
        assert "ipBlock" not in caller, caller
        if "namespaceSelector" in caller:
            names = caller["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            assert names == "monitoring", caller
            continue
        labels = caller["podSelector"]["matchLabels"]
        assert labels.items() >= server.items(), f"{overlay}: non-server pods reach auth: {caller}"
    doc = (K8S.parents[1] / "docs" / "operations.md").read_text()
    assert "#### Who auth believes" in doc


def test_the_clusters_comment_states_the_read_pools_the_budget_uses():
    """The connection budget comment in clusters.yaml names the same raw read pools
    (and per-pod totals) as EXTRA_CONNECTIONS, the numbers the budget is checked with."""
    text = (K8S / "components" / "postgres" / "clusters.yaml").read_text()
    comment = " ".join(line.lstrip("# ") for line in text.splitlines() if line.startswith("#"))
    assert f"LIST_READS = {LIST_READS} in pytake_contacts.app): {22 + LIST_READS};" in comment
    assert f"(READ_POOL_SIZE, {READ_POOL_SIZE}) and its stream LISTEN: {23 + READ_POOL_SIZE}" in (
        comment
    )
    assert f"7 x {22 + LIST_READS} + 1" in comment
