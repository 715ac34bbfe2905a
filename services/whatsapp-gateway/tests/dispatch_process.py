"""whatsapp-gateway's send dispatcher alone, as a process a test kills (SIGKILL) while
its sends are in flight (test_send_lease.py).

Settings come from the environment (``PYTAKE_OWN_DATABASE_URL`` and the rest).
"""

import asyncio

from pytake_common.crypto import SecretBox
from pytake_common.db import Database
from pytake_whatsapp_gateway.app import database_pool_size, graph_http_client
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.sending.dispatcher import Dispatcher
from pytake_whatsapp_gateway.sending.sender import Sender


async def main() -> None:
    settings = Settings()
    db = Database(
        settings.service_database_url(),
        app_role=settings.db_app_role,
        pool_size=database_pool_size(settings),
    )
    async with graph_http_client(settings) as client:
        sender = Sender(settings, db, SecretBox(settings.secret), client)
        print("ready", flush=True)
        await Dispatcher(settings, db, sender).run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main())
