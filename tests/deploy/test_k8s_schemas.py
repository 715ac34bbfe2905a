"""Every object is checked against a schema: Kubernetes' own for built-in kinds
(kubernetes-validate, strict), ours for the operators' custom resources, whose
CRD schemas are not available offline."""

import copy
import re

import kubernetes_validate
import pytest

#: The oldest Kubernetes the manifests claim to support (deploy/README.md) and
#: the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ("1.30", kubernetes_validate.utils.latest_version())

#: The custom resources we use: apiVersion -> kind -> {required path: type}.
#: Paths are tuples because label keys contain dots.
CUSTOM_RESOURCES = {
    "kafka.strimzi.io/v1": {
        "Kafka": {
            ("spec", "kafka", "listeners"): list,
            ("spec", "kafka", "config"): dict,
            ("spec", "entityOperator", "topicOperator"): dict,
        },
        "KafkaNodePool": {
            ("metadata", "labels", "strimzi.io/cluster"): str,
            ("spec", "replicas"): int,
            ("spec", "roles"): list,
            ("spec", "storage", "type"): str,
        },
        "KafkaTopic": {
            ("metadata", "labels", "strimzi.io/cluster"): str,
            ("spec", "partitions"): int,
            ("spec", "replicas"): int,
            ("spec", "config", "retention.ms"): int,
            ("spec", "config", "min.insync.replicas"): int,
        },
    },
    "postgresql.cnpg.io/v1": {
        "Cluster": {
            ("spec", "instances"): int,
            ("spec", "storage", "size"): str,
            ("spec", "bootstrap", "initdb", "database"): str,
            ("spec", "bootstrap", "initdb", "owner"): str,
            ("spec", "managed", "roles"): list,
        },
        "ScheduledBackup": {
            ("spec", "schedule"): str,
            ("spec", "cluster", "name"): str,
            ("spec", "method"): str,
        },
    },
    "barmancloud.cnpg.io/v1": {
        "ObjectStore": {
            ("spec", "configuration", "destinationPath"): str,
            ("spec", "retentionPolicy"): str,
        },
    },
    "monitoring.coreos.com/v1": {
        "ServiceMonitor": {("spec", "selector", "matchLabels"): dict, ("spec", "endpoints"): list},
        "PodMonitor": {("spec", "selector"): dict, ("spec", "podMetricsEndpoints"): list},
        "PrometheusRule": {("spec", "groups"): list},
    },
}


def lookup(doc, path):
    node = doc
    for key in path:
        assert isinstance(node, dict) and key in node, f"{doc['kind']}: missing {'.'.join(path)}"
        node = node[key]
    return node


def is_custom(doc):
    group = doc["apiVersion"].rpartition("/")[0]
    return "." in group and not group.endswith(".k8s.io")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_builtin_objects_match_the_kubernetes_schema(overlay, manifests, version):
    checked, errors = 0, []
    for doc in manifests.docs:
        if is_custom(doc):
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"no schema: {exc.message}")
        checked += 1
    assert not errors, "\n".join(errors)
    assert checked >= 40


def test_the_validator_does_catch_mistakes(render_kustomization, overlay, manifests):
    deployment = copy.deepcopy(manifests.of_kind("Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["prot"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_custom_resources_have_their_required_fields(overlay, manifests):
    for doc in manifests.docs:
        if not is_custom(doc):
            continue
        kinds = CUSTOM_RESOURCES.get(doc["apiVersion"])
        assert kinds is not None, f"unexpected custom apiVersion {doc['apiVersion']}"
        assert doc["kind"] in kinds, f"unexpected kind {doc['kind']} in {doc['apiVersion']}"
        assert doc["metadata"].get("name")
        for path, type_ in kinds[doc["kind"]].items():
            value = lookup(doc, path)
            assert isinstance(value, type_), f"{doc['kind']}: {'.'.join(path)} is not {type_}"
            assert value or value == 0 or type_ is dict, f"{doc['kind']}: empty {'.'.join(path)}"
        check_semantics(doc)


def check_semantics(doc):
    """What the operators' CRD schemas would reject (enums, shapes we rely on)."""
    spec = doc["spec"]
    match doc["kind"]:
        case "Kafka":
            for listener in spec["kafka"]["listeners"]:
                assert {"name", "port", "type", "tls"} <= listener.keys()
                assert listener["type"] in {
                    "internal",
                    "route",
                    "loadbalancer",
                    "nodeport",
                    "ingress",
                    "cluster-ip",
                }
            assert "zookeeper" not in spec, "KRaft only"
        case "KafkaNodePool":
            assert set(spec["roles"]) <= {"controller", "broker"}
            assert spec["storage"]["type"] in {"jbod", "persistent-claim", "ephemeral"}
        case "KafkaTopic":
            assert spec["partitions"] > 0 and spec["replicas"] > 0
            assert spec["config"]["min.insync.replicas"] <= spec["replicas"]
        case "Cluster":
            for role in spec["managed"]["roles"]:
                assert {"name", "ensure", "login"} <= role.keys()
                assert role["ensure"] in {"present", "absent"}
            initdb = spec["bootstrap"]["initdb"]
            assert "secret" not in initdb, "the owner's Secret is CloudNativePG's own"
        case "ScheduledBackup":
            # CloudNativePG's cron has six fields, seconds first.
            assert len(spec["schedule"].split()) == 6, spec["schedule"]
            assert spec["method"] in {"barmanObjectStore", "volumeSnapshot", "plugin"}
            if spec["method"] == "plugin":
                assert spec["pluginConfiguration"]["name"] == "barman-cloud.cloudnative-pg.io"
        case "ObjectStore":
            config = spec["configuration"]
            assert re.fullmatch(r"(s3|gs|https?)://\S+", config["destinationPath"])
            assert re.fullmatch(r"[1-9][0-9]*[dwm]", spec["retentionPolicy"])
            # Credentials only by Secret reference, never inline.
            for provider in ("s3Credentials", "azureCredentials", "googleCredentials"):
                for name, ref in (config.get(provider) or {}).items():
                    if isinstance(ref, dict):
                        assert set(ref) == {"name", "key"}, f"{provider}.{name}"
        case "PodMonitor":
            for endpoint in spec["podMetricsEndpoints"]:
                assert endpoint.get("port")
        case "ServiceMonitor":
            for endpoint in spec["endpoints"]:
                assert endpoint.get("port") and endpoint.get("path") == "/metrics"
        case "PrometheusRule":
            for group in spec["groups"]:
                assert group["name"] and group["rules"]
                for rule in group["rules"]:
                    assert ("alert" in rule) != ("record" in rule) and rule["expr"]


def test_every_custom_kind_is_present(overlay, manifests):
    present = {(d["apiVersion"], d["kind"]) for d in manifests.docs}
    expected = {(api, kind) for api, kinds in CUSTOM_RESOURCES.items() for kind in kinds}
    if overlay == "dev":  # no object store, so no backups (components/postgres-backup)
        expected -= {
            ("postgresql.cnpg.io/v1", "ScheduledBackup"),
            ("barmancloud.cnpg.io/v1", "ObjectStore"),
        }
    assert expected <= present, expected - present
