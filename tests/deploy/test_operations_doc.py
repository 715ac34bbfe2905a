"""docs/operations.md cannot drift from the code and the manifests: its
configuration reference lists exactly the variables the code reads, every alert
has a section, every Secret the manifests reference is documented, and the DLQ
commands it shows exist."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
DOC = REPO / "docs" / "operations.md"
SOURCES = ("libs/*/src", "services/*/src", "tools/*/src")


def doc() -> str:
    return DOC.read_text()


def section(title: str, level: int = 2) -> str:
    """The text under ``## title`` up to the next heading of the same level."""
    text = doc()
    marks = "#" * level
    match = re.search(rf"^{marks} {re.escape(title)}\n(.*?)(?=^{marks} |\Z)", text, re.M | re.S)
    assert match, f"docs/operations.md has no '{marks} {title}' section"
    return match.group(1)


def settings_classes() -> list[type[BaseSettings]]:
    """Every pydantic-settings class defined in the repository's packages."""
    found: dict[str, type[BaseSettings]] = {}
    for pattern in SOURCES:
        for root in REPO.glob(pattern):
            for path in root.rglob("*.py"):
                if "migrations" in path.parts:
                    continue
                tree = ast.parse(path.read_text())
                names = [
                    n.name
                    for n in tree.body
                    if isinstance(n, ast.ClassDef)
                    and any("Settings" in ast.unparse(base) for base in n.bases)
                ]
                if not names:
                    continue
                module = ".".join(path.relative_to(root).with_suffix("").parts)
                loaded = importlib.import_module(module)
                for name in names:
                    cls = getattr(loaded, name)
                    if isinstance(cls, type) and issubclass(cls, BaseSettings):
                        found[f"{module}.{name}"] = cls
    assert len(found) >= 8, sorted(found)
    return list(found.values())


def env_names(cls: type[BaseSettings]) -> dict[str, str]:
    """field -> first environment variable name it is read from (all names for aliases)."""
    prefix = cls.model_config.get("env_prefix", "")
    names: dict[str, str] = {}
    for field, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for i, choice in enumerate(alias.choices):
                names[f"{field}#{i}"] = str(choice)
        elif isinstance(alias, str):
            names[field] = alias
        else:
            names[field] = (prefix + field).upper()
    return names


#: Variables a library reads for us, each with the module that reads it (the
#: manifests set them, so they are documented with ours).
LIBRARY_VARIABLES = {"FORWARDED_ALLOW_IPS": "uvicorn.config"}


def variables_in_code() -> set[str]:
    from pytake_common.settings import ServiceSettings

    variables: set[str] = set()
    for name, module in LIBRARY_VARIABLES.items():
        assert name in inspect.getsource(importlib.import_module(module)), (name, module)
        variables.add(name)
    for cls in settings_classes():
        variables |= set(env_names(cls).values())
        if issubclass(cls, ServiceSettings) and cls is not ServiceSettings:
            # ServiceSettings.service_database_url(): <SERVICE>_DATABASE_URL.
            service = cls.model_fields["service_name"].default
            if service != "api-gateway":  # no database
                variables.add(service.upper().replace("-", "_") + "_DATABASE_URL")
    for pattern in SOURCES:
        for root in REPO.glob(pattern):
            for path in root.rglob("*.py"):
                variables |= environment_reads(ast.parse(path.read_text()))
    return variables


def environment_reads(tree: ast.Module) -> set[str]:
    """Names read with ``os.environ.get(X)``, ``os.environ[X]`` or ``os.getenv(X)``,
    where X is a string literal or a module-level constant holding one."""
    constants = {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }

    def name_of(arg: ast.expr) -> str | None:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
        if isinstance(arg, ast.Name):
            return constants.get(arg.id)
        return None

    found = set()
    for node in ast.walk(tree):
        arg = None
        if isinstance(node, ast.Call) and node.args:
            func = ast.unparse(node.func)
            if func in {"os.environ.get", "os.getenv", "environ.get", "getenv"}:
                arg = node.args[0]
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) in {
            "os.environ",
            "environ",
        }:
            arg = node.slice
        if arg is not None and (name := name_of(arg)) and re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            found.add(name)
    return found


def documented_variables(text: str) -> set[str]:
    """Variables named in the first column of the reference's tables."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| `"):
            first = line.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))
    return names


def test_configuration_reference_lists_exactly_what_the_code_reads():
    code = variables_in_code()
    documented = documented_variables(section("Configuration reference"))
    assert documented, "no variables found in the configuration tables"
    undocumented = sorted(code - documented)
    stale = sorted(documented - code)
    assert not undocumented, f"add to docs/operations.md, Configuration reference: {undocumented}"
    assert not stale, f"documented but read by no code: {stale}"


def test_each_service_documents_its_own_settings_under_its_heading():
    from pytake_common.settings import ServiceSettings

    common = set(env_names(ServiceSettings).values())
    for cls in settings_classes():
        if not issubclass(cls, ServiceSettings) or cls is ServiceSettings:
            continue
        service = cls.model_fields["service_name"].default
        own = set(env_names(cls).values()) - common
        listed = documented_variables(section(service, level=3))
        assert own <= listed, f"### {service}: missing {sorted(own - listed)}"


def alerts(render) -> set[str]:
    names = set()
    for overlay in ("dev", "prod"):
        for rule in render(K8S / "overlays" / overlay).of_kind("PrometheusRule"):
            for group in rule["spec"]["groups"]:
                names |= {r["alert"] for r in group["rules"] if "alert" in r}
    return names


def test_every_alert_has_a_section_saying_what_it_means_and_what_to_do(render_kustomization):
    names = alerts(render_kustomization)
    assert len(names) >= 9, names
    for name in sorted(names):
        body = section(name, level=3)
        assert "**Means**" in body and "**Do**" in body, name
    documented = set(re.findall(r"^### (PyTake\w+)$", section("Alerts"), re.M))
    assert documented == names, f"alert sections without a rule: {sorted(documented - names)}"


def test_every_referenced_secret_and_key_is_documented(render_kustomization):
    text = doc()
    prod = render_kustomization(K8S / "overlays" / "prod")
    refs: set[tuple[str, str]] = set()
    for _, pod in prod.pod_specs():
        for container in pod["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.add((ref["name"], ref["key"]))
    for store in prod.of_kind("ObjectStore"):
        for ref in store["spec"]["configuration"].get("s3Credentials", {}).values():
            refs.add((ref["name"], ref["key"]))
    for ingress in prod.of_kind("Ingress"):
        for tls in ingress["spec"].get("tls", []):
            refs.add((tls["secretName"], ""))
    assert refs
    for name, key in sorted(refs):
        if name.endswith("-pg-app"):
            # CloudNativePG's own Secret: documented by pattern.
            assert "pytake-<service>-pg-app" in text and f"`{key}`" in text, name
            continue
        assert f"`{name}`" in text, f"Secret {name} is not documented"
        if key:
            assert f"`{key}`" in text, f"key {key} of Secret {name} is not documented"


def test_documented_dlq_commands_exist():
    from pytake_common import dlq

    body = section("Replaying a dead-letter queue")
    commands = re.findall(r"python -m pytake_common\.dlq (\w+)([^\n`]*)", body)
    assert {c for c, _ in commands} == {"list", "replay"}
    parser = dlq.build_parser()
    for command, rest in commands:
        argv = [command, *rest.split()]
        args = parser.parse_args(argv)  # SystemExit on an unknown option
        assert args.command == command
    for option in set(re.findall(r"`(--[a-z-]+)", body)):
        assert any(
            option in action.option_strings
            for sub in parser._subparsers._group_actions[0].choices.values()  # type: ignore[union-attr]
            for action in sub._actions
        ), option
