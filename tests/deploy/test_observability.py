"""The Grafana dashboard and the alert rules speak only of metrics the services export."""

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "pytake-main-loop.json"
RULES = REPO / "deploy" / "k8s" / "base" / "prometheus-rules.yaml"
METRIC = re.compile(r"pytake_[a-z_]+")


def expressions(node):
    """Every PromQL expression in a dashboard (panel targets and variable queries)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and (
                key in {"expr", "definition"} or (key == "query" and "(" in value)
            ):
                yield value
            else:
                yield from expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from expressions(item)


def test_dashboard_parses_and_uses_only_known_metrics(metric_is_known):
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["panels"]
    exprs = list(expressions(dashboard))
    assert len(exprs) >= 15
    used = {m for e in exprs for m in METRIC.findall(e)}
    unknown = sorted(m for m in used if not metric_is_known(m))
    assert not unknown, f"unknown metrics in the dashboard: {unknown}"
    # ...and the raw file mentions no other pytake_* metric anywhere.
    assert all(metric_is_known(m) for m in METRIC.findall(DASHBOARD.read_text()))


def test_dashboard_covers_the_main_loop():
    text = DASHBOARD.read_text()
    for metric in (
        "pytake_webhook_deliveries_total",  # webhook rate
        "pytake_http_request_duration_seconds_bucket",  # latency
        "pytake_outbox_published_total",  # end-to-end delivery
        "pytake_events_consumed_total",
        "pytake_consumer_lag",
        "pytake_whatsapp_sends_total",  # send success by error code
        "pytake_http_requests_total",  # RED
    ):
        assert metric in text, metric
    assert "error_code" in text
    panels = json.loads(text)["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_alert_rules_cover_the_failure_modes(metric_is_known):
    rule = yaml.safe_load(RULES.read_text())
    rules = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    exprs = " ".join(r["expr"] for r in rules)
    unknown = sorted(m for m in set(METRIC.findall(exprs)) if not metric_is_known(m))
    assert not unknown, unknown
    alerts = {r["alert"]: r["expr"] for r in rules if "alert" in r}
    recorded = {r["record"] for r in rules if "record" in r}

    def alert_using(needle):
        return [name for name, expr in alerts.items() if needle in expr]

    assert alert_using("pytake_outbox_backlog"), "outbox backlog"
    assert alert_using("pytake_consumer_lag"), "consumer lag"
    assert alert_using("increase(pytake_events_dead_lettered_total"), "DLQ not empty"
    assert alert_using("increase(pytake_outbox_dead_total"), "outbox events set aside"
    assert alert_using('status=~"5.."'), "5xx rate"
    assert alert_using('pytake_webhook_deliveries_total{outcome="bad_signature"}'), "signatures"
    burn = [a for a in alerts if "SLO" in a]
    assert burn and all(any(r in alerts[a] for r in recorded) for a in burn), (
        "latency SLO burn alerts"
    )
    for name, r in ((r["alert"], r) for r in rules if "alert" in r):
        assert r["labels"]["severity"] in {"warning", "critical"}, name
        assert r["annotations"]["summary"], name
    # Every recording rule used exists, and every one defined is used.
    used = set(re.findall(r"pytake:[a-z_:0-9]+", " ".join(alerts.values())))
    assert used == recorded


def kafka_pods(manifests):
    """The labels Strimzi gives a broker pod of each node pool and the Kafka Exporter."""
    pods = {
        f"node {pool['metadata']['name']}": {
            "strimzi.io/cluster": "pytake-kafka",
            "strimzi.io/kind": "Kafka",
            "strimzi.io/name": "pytake-kafka-kafka",
            "strimzi.io/pool-name": pool["metadata"]["name"],
            "strimzi.io/broker-role": "true",
        }
        for pool in manifests.of_kind("KafkaNodePool")
    }
    pods["exporter"] = {
        "strimzi.io/cluster": "pytake-kafka",
        "strimzi.io/kind": "Kafka",
        "strimzi.io/name": "pytake-kafka-kafka-exporter",
    }
    return pods


def test_kafka_is_scraped_and_alerted_on(overlay, manifests):
    (kafka,) = manifests.of_kind("Kafka")
    assert kafka["spec"]["kafka"]["metricsConfig"]["type"] == "strimziMetricsReporter"
    assert "kafkaExporter" in kafka["spec"]
    for what, labels in kafka_pods(manifests).items():
        covering = [
            m
            for m in manifests.of_kind("PodMonitor")
            if manifests.selects(m["spec"]["selector"], labels)
        ]
        assert len(covering) == 1, f"{overlay}: {what} scraped by {len(covering)} PodMonitors"
        ports = {e["port"] for e in covering[0]["spec"]["podMetricsEndpoints"]}
        assert ports == {"tcp-prometheus"}, what
        # Prometheus (namespace monitoring) may open 9404 on it despite the default deny.
        assert any(
            manifests.selects(p["spec"]["podSelector"], labels)
            and any(
                any(
                    f.get("namespaceSelector", {})
                    .get("matchLabels", {})
                    .get("kubernetes.io/metadata.name")
                    == "monitoring"
                    for f in rule.get("from", [])
                )
                and any(port.get("port") == 9404 for port in rule.get("ports", []))
                for rule in p["spec"].get("ingress", [])
            )
            for p in manifests.of_kind("NetworkPolicy")
        ), f"{overlay}: Prometheus cannot reach {what}"

    rules = [
        r
        for rule in manifests.of_kind("PrometheusRule")
        for g in rule["spec"]["groups"]
        for r in g["rules"]
        if "alert" in r
    ]

    def alert_using(needle):
        return [r["alert"] for r in rules if needle in r["expr"]]

    assert alert_using("kafka_topic_partition_under_replicated_partition"), "under-replicated"
    assert alert_using("kafka_controller_kafkacontroller_offlinepartitionscount"), "offline"
    assert alert_using("kafka_server_replicamanager_underminisrpartitioncount"), "under min ISR"
    assert alert_using("kafka_consumergroup_lag"), "consumer lag as the brokers see it"
    assert alert_using('kafka_broker="true"'), "broker down"
    # Every series an alert reads is exported: the reporter's allow-list lets it through.
    allowed = [
        re.compile(p) for p in kafka["spec"]["kafka"]["metricsConfig"]["values"]["allowList"]
    ]
    for name in set(
        re.findall(
            r"\bkafka_(?:server|controller|network|log)_[a-z_]+", " ".join(r["expr"] for r in rules)
        )
    ):
        assert any(p.fullmatch(name) for p in allowed), f"{name} is not in the reporter's allowList"
