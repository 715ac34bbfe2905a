"""Run as a script: a consumer process that dies after its DB commit, before its offset commit.

``os._exit`` skips every cleanup, as a kill -9 would: no LeaveGroup, no offset commit.
"""

import asyncio
import os
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from plumbing import hit, settings_for

from pytake_common.consumer import EventConsumer
from pytake_common.db import Database


class DiesBeforeOffsetCommit(EventConsumer):
    async def commit(self, offsets):
        os._exit(17)


async def main(url: str, bootstrap: str, group: str, etype: str) -> None:
    settings = settings_for(bootstrap, "plumbing")
    consumer = DiesBeforeOffsetCommit(
        settings, Database(url, app_role="pytake_app"), group, {etype: hit}
    )
    await consumer.run(asyncio.Event())


if __name__ == "__main__":
    assert uuid.UUID(int=0) is not None
    asyncio.run(main(*sys.argv[1:5]))
