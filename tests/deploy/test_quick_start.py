"""The shell steps in docs/operations.md and deploy/README.md work as written.

Each fenced block is read as the commands a reader would paste (variables,
``for`` loops and line continuations expanded). Every ``kubectl apply -k`` of an
overlay must come after the document created that overlay's namespace and,
in it, every Secret and key the rendered overlay needs; images a dev cluster
loads must be the ones Compose builds and the overlay runs.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = ("docs/operations.md", "deploy/README.md")


def commands(text: str) -> list[list[str]]:
    """Every command of every fenced block, in order, as argument lists."""
    found: list[list[str]] = []
    for block in re.findall(r"^```[a-z]*\n(.*?)^```", text, re.M | re.S):
        variables: dict[str, str] = {}
        lines = block.replace("\\\n", " ").splitlines()
        loop: tuple[str, list[str], list[str]] | None = None
        for raw in lines:
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if not line:
                continue
            if loop is not None:
                if line == "done":
                    name, values, body = loop
                    for value in values:
                        for command in body:
                            found.append(expand(command, variables | {name: value}))
                    loop = None
                else:
                    loop[2].append(line)
                continue
            if match := re.fullmatch(r"for (\w+) in (.*); do", line):
                loop = (match[1], match[2].split(), [])
                continue
            if match := re.fullmatch(r"([A-Z_]+)=(\S+)", line):
                variables[match[1]] = match[2]
                continue
            for part in line.split(" | "):
                found.append(expand(part, variables))
    return found


def expand(line: str, variables: dict[str, str]) -> list[str]:
    line = re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m[1], m[0]), line)
    return shlex.split(line)


@dataclass
class Reader:
    """What a reader's cluster holds after the commands so far."""

    namespaces: list[str] = field(default_factory=list)
    secrets: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    loaded_images: set[str] = field(default_factory=set)
    built_with_compose: bool = False
    applied: list[str] = field(default_factory=list)


def run(argv: list[str], reader: Reader, render) -> None:
    if argv[:3] == ["docker", "compose", "build"]:
        reader.built_with_compose = True
    elif argv[:4] == ["kind", "load", "docker-image"] or argv[:3] == ["minikube", "image", "load"]:
        reader.loaded_images.add(argv[-1])
    if argv[:1] != ["kubectl"]:
        return
    namespace = argv[argv.index("-n") + 1] if "-n" in argv else None
    rest = [a for i, a in enumerate(argv) if a != "-n" and (i == 0 or argv[i - 1] != "-n")]
    if rest[1:3] == ["create", "namespace"]:
        reader.namespaces.append(rest[3])
    elif rest[1:4] == ["create", "secret", "generic"]:
        assert namespace in reader.namespaces, f"secret in namespace {namespace} before it exists"
        keys = {a.split("=", 2)[1] for a in rest if a.startswith("--from-literal=")}
        reader.secrets.setdefault((namespace, rest[4]), set()).update(keys)
    elif rest[1:3] == ["apply", "-k"]:
        overlay = rest[3]
        check_apply(overlay, reader, render(REPO / overlay))
        reader.applied.append(overlay)


def required_secrets(manifests) -> set[tuple[str, str]]:
    """(Secret, key) every pod or operand of the overlay cannot start without."""
    needed: set[tuple[str, str]] = set()
    for _, pod in manifests.pod_specs():
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref and not ref.get("optional"):
                    needed.add((ref["name"], ref["key"]))
    for store in manifests.of_kind("ObjectStore"):
        for ref in store["spec"]["configuration"].get("s3Credentials", {}).values():
            needed.add((ref["name"], ref["key"]))
    return needed


def check_apply(overlay: str, reader: Reader, manifests) -> None:
    (namespace,) = [n["metadata"]["name"] for n in manifests.of_kind("Namespace")]
    assert namespace in reader.namespaces, f"{overlay}: namespace {namespace} never created"
    for name, key in sorted(required_secrets(manifests)):
        if name.endswith("-pg-app"):
            continue  # CloudNativePG writes it
        keys = reader.secrets.get((namespace, name), set())
        assert key in keys, f"{overlay}: Secret {name} (key {key}) not created in {namespace}"
    if reader.loaded_images:
        # A local cluster: every image the overlay runs was built and loaded.
        compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
        built = {s["image"] for s in compose.values() if "build" in s}
        assert reader.built_with_compose
        for _, pod in manifests.pod_specs():
            for container in pod["containers"]:
                image = container["image"]
                assert image in reader.loaded_images, f"{overlay}: {image} is not loaded"
                assert image in built, f"{overlay}: compose does not build {image}"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_documented_steps_work_as_written(document, render_kustomization):
    reader = Reader()
    for argv in commands((REPO / document).read_text()):
        run(argv, reader, render_kustomization)
    assert {"deploy/k8s/overlays/prod", "deploy/k8s/overlays/dev"} <= set(reader.applied), (
        f"{document} shows how to apply both overlays"
    )


def test_the_reader_catches_a_missing_secret(render_kustomization):
    create, apply = commands(
        "```\nkubectl create namespace pytake\nkubectl apply -k deploy/k8s/overlays/prod\n```\n"
    )
    reader = Reader()
    run(create, reader, render_kustomization)
    with pytest.raises(AssertionError, match="not created in pytake"):
        run(apply, reader, render_kustomization)


def test_prod_images_name_a_registry(render_kustomization):
    """Without a registry host an image is pulled from Docker Hub under that name."""
    prod = render_kustomization(REPO / "deploy/k8s/overlays/prod")
    for where, pod in prod.pod_specs():
        for container in pod["containers"]:
            host = container["image"].split("/")[0]
            assert "." in host or ":" in host or host == "localhost", (
                f"{where}: {container['image']}"
            )
