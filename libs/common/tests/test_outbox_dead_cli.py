"""``python -m pytake_<service> outbox-dead list|requeue``: the relay's set-aside events."""

import asyncio
import io
import json
import uuid
from contextlib import redirect_stdout

import pytest
from sqlalchemy import text

from pytake_common.cli import run_cli
from pytake_common.outbox_dead import requeue, set_aside

from .conftest import MIGRATIONS
from .plumbing import settings_for

SET_ASIDE = """
INSERT INTO outbox_dead (id, event_id, topic, key, event, headers, created_at, reason)
VALUES (:id, :event_id, 'pytake.test.note', 'k', CAST(:event AS jsonb), '{}', now(), :reason)
"""


async def set_aside_rows(db, *ids: int) -> dict[int, uuid.UUID]:
    events = {i: uuid.uuid4() for i in ids}
    async with db.transaction() as s:
        for i, event_id in events.items():
            await s.execute(
                text(SET_ASIDE),
                {
                    "id": i,
                    "event_id": event_id,
                    "event": json.dumps({"id": str(event_id)}),
                    "reason": f"MessageSizeTooLargeError\nrow {i}",
                },
            )
    return events


async def outbox_events(db) -> list[uuid.UUID]:
    async with db.transaction() as s:
        return list((await s.execute(text("SELECT event_id FROM outbox ORDER BY id"))).scalars())


def cli(db, kafka_bootstrap: str, *argv: str) -> tuple[int, str]:
    """Run the service command line as ``python -m pytake_<service>`` would (own thread:
    it runs its own event loop); its exit status and output."""
    settings = settings_for(kafka_bootstrap, "plumbing").model_copy(
        update={"own_database_url": db.url}
    )
    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit) as exited:
        run_cli(
            list(argv),
            settings_factory=lambda: settings,
            app_factory=lambda _: pytest.fail("outbox-dead must not build the app"),
            migrations_dir=MIGRATIONS,
        )
    return int(exited.value.code or 0), out.getvalue()


async def test_list_then_requeue_some_then_the_rest(db, kafka_bootstrap):
    events = await set_aside_rows(db, 7, 9, 12)

    code, out = await asyncio.to_thread(cli, db, kafka_bootstrap, "outbox-dead", "list")
    assert code == 0
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["id=7", "id=9", "id=12"]
    assert f"event_id={events[9]}" in lines[1]
    assert lines[1].endswith("reason=MessageSizeTooLargeError\\nrow 9")  # one line each
    assert lines[3] == "3 event(s) set aside in outbox_dead (plumbing)"

    code, out = await asyncio.to_thread(
        cli, db, kafka_bootstrap, "outbox-dead", "requeue", "9", "12"
    )
    assert code == 0 and out.startswith("2 event(s) back in the outbox (plumbing): [9, 12]")
    assert await outbox_events(db) == [events[9], events[12]]  # in their first order
    assert [r["id"] for r in await set_aside(db.url)] == [7]

    # an id not (or no longer) set aside: nothing done for it, and the exit says so
    code, out = await asyncio.to_thread(
        cli, db, kafka_bootstrap, "outbox-dead", "requeue", "9", "7"
    )
    assert code == 1
    assert "1 event(s) back in the outbox (plumbing): [7]" in out
    assert "not set aside (nothing done): [9]" in out
    assert await set_aside(db.url) == []
    assert await outbox_events(db) == [events[9], events[12], events[7]]


async def test_requeue_all_and_the_usage_errors(db, kafka_bootstrap):
    events = await set_aside_rows(db, 3, 4)
    code, out = await asyncio.to_thread(cli, db, kafka_bootstrap, "outbox-dead", "requeue")
    assert code == 2 and "give the ids to put back, or --all" in out
    code, out = await asyncio.to_thread(
        cli, db, kafka_bootstrap, "outbox-dead", "requeue", "3", "--all"
    )
    assert code == 2
    assert len(await set_aside(db.url)) == 2  # nothing moved by a refused command

    assert await requeue(db.url, None) == [3, 4]
    assert await outbox_events(db) == [events[3], events[4]]
    assert await requeue(db.url, None) == []


async def test_a_row_that_cannot_go_back_stays_set_aside(db, kafka_bootstrap):
    """Its event id staged again meanwhile (outbox.event_id is unique): the statement
    fails whole, and no row leaves outbox_dead to vanish."""
    events = await set_aside_rows(db, 20, 21)
    async with db.transaction() as s:
        await s.execute(
            text(
                "INSERT INTO outbox (event_id, topic, key, event) "
                "VALUES (:e, 't', 'k', '{}'::jsonb)"
            ),
            {"e": events[21]},
        )
    with pytest.raises(Exception, match="duplicate key"):
        await requeue(db.url, [20, 21])
    assert [r["id"] for r in await set_aside(db.url)] == [20, 21]
