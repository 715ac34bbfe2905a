"""The source service's outbox relay for bench/outgoing_webhooks.py, in a process of its own.

A real :class:`~pytake_common.outbox.OutboxRelay` (as conversations runs it) over the
database named by ``PYTAKE_OWN_DATABASE_URL``, publishing to ``PYTAKE_KAFKA_BOOTSTRAP``,
until SIGTERM: the benchmark commits events to that outbox, and the relay's hop to Kafka
is part of what it measures, in its own process as in a deployment.

Usage: PYTAKE_OWN_DATABASE_URL=... PYTAKE_KAFKA_BOOTSTRAP=... python bench/_outbox_relay.py
"""

from __future__ import annotations

import asyncio
import signal

from pytake_common.db import Database
from pytake_common.outbox import OutboxRelay
from pytake_common.settings import ServiceSettings


async def main() -> None:
    settings = ServiceSettings(service_name="conversations")
    db = Database(settings.service_database_url())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await OutboxRelay(settings, db).run(stop)
    finally:
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
