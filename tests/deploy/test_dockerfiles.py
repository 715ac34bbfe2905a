"""Each app's Dockerfile: multi-stage python:3.11-slim, installs from the root
uv.lock, runs as uid 10001, and differs from the others only where it must."""

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def dockerfile(app):
    return (REPO / app.folder / "Dockerfile").read_text()


def instructions(text):
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n\s*",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    return [line.strip() for line in joined.splitlines() if line.strip()]


def test_dockerfile(app):
    lines = instructions(dockerfile(app))
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) >= 2, "multi-stage"
    assert [f for f in froms if not f.startswith("FROM ghcr.io/astral-sh/uv")] == [
        "FROM python:3.11-slim AS build",
        "FROM python:3.11-slim AS runtime",
    ]
    runs = " ".join(line for line in lines if line.startswith("RUN "))
    assert f"uv sync --frozen --no-dev --no-editable --package {app.package}" in runs
    assert lines[-1] == f'CMD ["python", "-m", "{app.module}", "serve"]'
    final = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    assert "USER 10001:10001" in final
    assert f"EXPOSE {app.port}" in final
    (health,) = [line for line in final if line.startswith("HEALTHCHECK ")]
    # python, not curl: the slim image has none; the port is the image's own.
    assert 'CMD ["python", "-c", "import os, urllib.request;' in health
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
    assert f"docker build -f {app.folder}/Dockerfile" in dockerfile(app), "document the context"


def test_dockerfiles_share_one_template(apps):
    """Drift guard: with the app's own names blanked out, all Dockerfiles are equal."""

    def shape(app):
        text = dockerfile(app)
        for word in (app.folder, app.package, app.module, app.name, str(app.port)):
            text = text.replace(word, "<app>")
        return text

    shapes = {app.name: shape(app) for app in apps}
    reference = shapes["auth"]
    assert all(s == reference for s in shapes.values()), [
        n for n, s in shapes.items() if s != reference
    ]
