"""The one Dockerfile every app is built from: multi-stage python:3.11-slim,
installs one workspace package from the root uv.lock, runs as uid 10001, and is
told which app it is by build arguments only."""

import json
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(text):
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n\s*",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    return [line.strip() for line in joined.splitlines() if line.strip()]


def test_dockerfile_shape():
    lines = instructions(DOCKERFILE)
    froms = [line for line in lines if line.startswith("FROM ")]
    assert [f for f in froms if not f.startswith("FROM ghcr.io/astral-sh/uv")] == [
        "FROM python:3.11-slim AS build",
        "FROM python:3.11-slim AS runtime",
    ]
    build = lines[: lines.index("FROM python:3.11-slim AS runtime")]
    final = lines[lines.index("FROM python:3.11-slim AS runtime") :]
    assert "ARG PACKAGE" in build and {"ARG MODULE", "ARG PORT"} <= set(final)
    runs = " ".join(line for line in build if line.startswith("RUN "))
    assert 'uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"' in runs
    env = " ".join(line for line in final if line.startswith("ENV "))
    assert "PYTAKE_APP_MODULE=${MODULE}" in env and "PYTAKE_PORT=${PORT}" in env
    # exec: the app, not the shell, is PID 1 and receives SIGTERM.
    assert final[-1] == 'CMD ["sh", "-c", "exec python -m \\"$PYTAKE_APP_MODULE\\" serve"]'
    assert "USER 10001:10001" in final
    assert "EXPOSE ${PORT}" in final
    (health,) = [line for line in final if line.startswith("HEALTHCHECK ")]
    # python, not curl: the slim image has none; the port is the image's own.
    assert "os.environ['PYTAKE_PORT'] + '/healthz'" in health
    assert "--timeout=" in health and "--start-period=" in health
    probe = json.loads(health.partition(" CMD ")[2])  # exec form: valid JSON
    compile(probe[2], "HEALTHCHECK", "exec")
    assert not any(line.startswith(("COPY . ", "ADD ")) for line in lines), (
        "no source/secret copies"
    )
    assert not re.search(
        r"(?i)(secret|password|token)\s*=",
        " ".join(line for line in lines if line.startswith(("ENV ", "ARG "))),
    )
    assert "docker build --build-arg PACKAGE=" in DOCKERFILE, "document the context and args"


def test_every_app_builds_from_it_with_its_own_arguments(apps):
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for app in apps:
        assert (REPO / app.folder / "pyproject.toml").read_text().count(
            f'name = "{app.package}"'
        ) == 1
        assert (REPO / app.folder / "src" / app.module / "__main__.py").exists()
        assert services[app.name]["build"] == {
            "context": ".",
            "args": {"PACKAGE": app.package, "MODULE": app.module, "PORT": str(app.port)},
        }
