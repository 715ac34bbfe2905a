"""``python -m pytake_<service> migrate|serve`` for every service."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from pytake_common.settings import ServiceSettings


def run_cli(
    argv: Sequence[str] | None,
    *,
    settings_factory: Callable[[], ServiceSettings],
    app_factory: Callable[[ServiceSettings], FastAPI],
    migrations_dir: Path | None,
) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    if migrations_dir is not None:
        sub.add_parser("migrate", help="create the database if needed and apply migrations")
    sub.add_parser("serve", help="run the HTTP API with its relay and consumers")
    args = parser.parse_args(argv)
    settings = settings_factory()
    if args.command == "migrate":
        from pytake_common.migrations import upgrade

        assert migrations_dir is not None
        upgrade(migrations_dir, settings.service_database_url(), settings.db_app_role)
        print(f"{settings.service_name}: migrations applied")
        return
    app = app_factory(settings)
    if migrations_dir is not None:
        from pytake_common.migrations import revisions

        app.state.schema_chain = revisions(migrations_dir)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        timeout_keep_alive=settings.http_keepalive_s,
    )
