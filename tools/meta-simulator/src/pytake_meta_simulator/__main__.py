"""``python -m pytake_meta_simulator``: serve the simulator with uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from pytake_meta_simulator.app import create_app
from pytake_meta_simulator.settings import SimulatorSettings


def main() -> None:
    settings = SimulatorSettings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
    )


if __name__ == "__main__":
    main()
