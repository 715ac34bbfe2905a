"""``python -m pytake_<service> outbox-dead``: the events the outbox relay set aside.

An outbox row the broker can never take (too large, not an event envelope) is moved to
the service database's ``outbox_dead`` table with the reason (see ``outbox.py``).
``outbox-dead list`` prints them (changes nothing); once the cause is fixed,
``outbox-dead requeue ID ...`` (or ``--all``) moves them back to the outbox in one
transaction, and the relay publishes them with its next batch. Consumers skip an event
they already handled, so a row put back twice is harmless; it is published after its
aggregate's later events.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import TextIO

import asyncpg

from pytake_common.dlq import one_line
from pytake_common.pgtenant import asyncpg_dsn

_LIST = """
SELECT id, topic, event_id, created_at, failed_at, reason FROM outbox_dead ORDER BY id
"""

#: No ON CONFLICT: a row that cannot go back (its event id staged again meanwhile)
#: fails the whole statement and stays where it is, rather than vanish from both.
_REQUEUE = """
WITH back AS (
    DELETE FROM outbox_dead WHERE $1::bigint[] IS NULL OR id = ANY($1::bigint[])
    RETURNING id, event_id, topic, key, event, headers
), again AS (
    INSERT INTO outbox (event_id, topic, key, event, headers)
    SELECT event_id, topic, key, event, headers FROM back ORDER BY id
    RETURNING event_id
)
SELECT back.id FROM back JOIN again USING (event_id) ORDER BY back.id
"""


async def set_aside(url: str) -> list[asyncpg.Record]:
    """Every row of ``outbox_dead``, oldest first."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await conn.fetch(_LIST))
    finally:
        await conn.close()


async def requeue(url: str, ids: Sequence[int] | None) -> list[int]:
    """Move rows ``ids`` (every row when ``None``) back to the outbox, in one
    transaction; the ids moved (an id not set aside is not an error: it is not there)."""
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        async with conn.transaction():
            rows = await conn.fetch(_REQUEUE, None if ids is None else list(ids))
        return [row["id"] for row in rows]
    finally:
        await conn.close()


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = "list the events the broker refused (outbox_dead), or put them back"
    cmd = sub.add_parser("outbox-dead", help=text, description=text)
    actions = cmd.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="print every set-aside event and its reason")
    back = actions.add_parser(
        "requeue", help="move set-aside events back to the outbox: the relay publishes them"
    )
    back.add_argument("ids", nargs="*", type=int, help="outbox_dead ids (as listed)")
    back.add_argument("--all", action="store_true", help="every set-aside event")


def run(args: argparse.Namespace, url: str, service: str, out: TextIO) -> int:
    if args.action == "list":
        rows = asyncio.run(set_aside(url))
        for r in rows:
            print(
                f"id={r['id']} topic={r['topic']} event_id={r['event_id']} "
                f"created_at={r['created_at'].isoformat()} "
                f"failed_at={r['failed_at'].isoformat()} reason={one_line(r['reason'])}",
                file=out,
            )
        print(f"{len(rows)} event(s) set aside in outbox_dead ({service})", file=out)
        return 0
    if bool(args.all) == bool(args.ids):
        print("outbox-dead requeue: give the ids to put back, or --all", file=out)
        return 2
    wanted = None if args.all else args.ids
    moved = asyncio.run(requeue(url, wanted))
    missing = sorted(set(wanted or ()) - set(moved))
    print(f"{len(moved)} event(s) back in the outbox ({service}): {moved}", file=out)
    if missing:
        print(f"not set aside (nothing done): {missing}", file=out)
        return 1
    return 0
