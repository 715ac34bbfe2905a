"""``python -m pytake_meta_simulator [serve]``: serve the simulator with uvicorn."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from pytake_meta_simulator.app import create_app
from pytake_meta_simulator.settings import SimulatorSettings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m pytake_meta_simulator",
        description="Local stand-in for Meta's WhatsApp Cloud API (configured by env vars).",
    )
    # ``serve`` is accepted (and is the only command) so the simulator starts like the services.
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.parse_args(argv)

    settings = SimulatorSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings, quiet_gc=settings.quiet_gc),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
