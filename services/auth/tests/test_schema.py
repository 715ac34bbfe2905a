from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_auth.events import SessionRevoked, UserRegistered
from pytake_auth.tables import metadata
from pytake_common.events import REGISTRY


async def test_migrations_match_the_table_definitions(database_url):
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
            )
    finally:
        await engine.dispose()
    ours = [
        d
        for d in diff
        if "outbox" not in repr(d)
        and "processed_events" not in repr(d)
        and "idempotency_keys" not in repr(d)
    ]
    assert ours == []


def test_events_are_registered_on_their_topics():
    assert REGISTRY["pytake.auth.user.registered.v1"] is UserRegistered
    assert REGISTRY["pytake.auth.session.revoked.v1"] is SessionRevoked
    assert UserRegistered.topic == "pytake.auth.user"
    assert SessionRevoked.topic == "pytake.auth.session"
    assert set(UserRegistered.json_schema()["required"]) == {
        "user_id",
        "organization_id",
        "email",
        "full_name",
        "role",
        "organization_name",
    }
    assert set(SessionRevoked.json_schema()["required"]) == {
        "session_id",
        "user_id",
        "organization_id",
        "reason",
    }
