"""The dispatcher alone, as a process the crash test kills (SIGKILL) mid-campaign.

Settings come from the environment (``PYTAKE_OWN_DATABASE_URL`` and the rest).
"""

import asyncio

from pytake_campaigns.config import Settings
from pytake_campaigns.dispatcher import Dispatcher
from pytake_common.db import Database


async def main() -> None:
    settings = Settings()
    db = Database(settings.service_database_url(), app_role=settings.db_app_role)
    print("ready", flush=True)
    await Dispatcher(settings, db).run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main())
