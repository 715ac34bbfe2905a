"""``python -m pytake_<service> migrate|serve`` for every service."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from pytake_common import outbox_dead
from pytake_common.settings import ServiceSettings

log = logging.getLogger(__name__)


def set_niceness(nice: int) -> bool:
    """Ask for scheduling niceness ``nice`` for this process; False (and a warning) when
    the system refuses it (a negative value without root or CAP_SYS_NICE)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        log.warning(
            "scheduling priority not changed: runs at niceness %d",
            os.getpriority(os.PRIO_PROCESS, 0),
            extra={"process_nice": nice, "error": exc.strerror},
        )
        return False
    return True


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
        outbox_dead.add_parser(sub)
    sub.add_parser("serve", help="run the HTTP API with its relay and consumers")
    args = parser.parse_args(argv)
    settings = settings_factory()
    if args.command == "outbox-dead":
        url = settings.service_database_url()
        raise SystemExit(outbox_dead.run(args, url, settings.service_name, sys.stdout))
    if args.command == "migrate":
        from pytake_common.migrations import upgrade

        assert migrations_dir is not None
        upgrade(migrations_dir, settings.service_database_url(), settings.db_app_role)
        print(f"{settings.service_name}: migrations applied")
        return
    app = app_factory(settings)  # logging configured
    if settings.process_nice is not None:
        set_niceness(settings.process_nice)
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
