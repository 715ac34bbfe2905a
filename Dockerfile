# syntax=docker/dockerfile:1.7
# One image recipe for every PyTake app; the build arguments choose which:
#   docker build --build-arg PACKAGE=pytake-auth --build-arg MODULE=pytake_auth \
#                --build-arg PORT=8001 -t pytake/auth:dev .
# (docker-compose.yml passes the same three for each app; docs/operations.md
# lists them.) Build context = the repository root: the image installs from the
# workspace's root uv.lock, so it must see every workspace member. Nothing from
# the context is copied into the final image except the installed virtualenv;
# no secret is baked in.
FROM python:3.11-slim AS build
ARG PACKAGE
COPY --from=ghcr.io/astral-sh/uv:0.13.8 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# --frozen: install exactly what uv.lock pins (fail if it is stale);
# --no-editable: workspace packages become real wheels inside the venv, so the
# runtime stage needs the venv only, not the source tree.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,target=/src \
    test -n "${PACKAGE}" || { echo "--build-arg PACKAGE=pytake-<app> is required" >&2; exit 1; }; \
    uv sync --frozen --no-dev --no-editable --package "${PACKAGE}"

FROM python:3.11-slim AS runtime
ARG MODULE
ARG PORT
RUN test -n "${MODULE}" && test -n "${PORT}" \
 || { echo "--build-arg MODULE=pytake_<app> and PORT are required" >&2; exit 1; }; \
    groupadd --system --gid 10001 pytake \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pytake
# Owned by root: the app user can read and execute, never modify, its code.
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTAKE_APP_MODULE=${MODULE} \
    PYTAKE_HOST=0.0.0.0 \
    PYTAKE_PORT=${PORT} \
    PYTAKE_STATE_DIR=/tmp/pytake
WORKDIR /app
USER 10001:10001
EXPOSE ${PORT}
# Liveness for plain `docker run` (the slim image has no curl). Compose
# overrides it with /readyz; Kubernetes ignores it and uses its probes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['PYTAKE_PORT'] + '/healthz', timeout=3)"]
# Entry points: `serve` (default: HTTP API with its outbox relay and consumers);
# `migrate` (apps that own a database: the migration Job, the compose step),
# run as `python -m pytake_<app> migrate`. `exec`: the app is PID 1 and gets
# the stop signal itself.
CMD ["sh", "-c", "exec python -m \"$PYTAKE_APP_MODULE\" serve"]
