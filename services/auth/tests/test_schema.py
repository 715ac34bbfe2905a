import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from pytake_auth.events import (
    SessionRevoked,
    UserActivated,
    UserCreated,
    UserDeactivated,
    UserDeleted,
    UserRegistered,
    UserSessionsRevoked,
    UserUpdated,
)
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


def test_user_administration_events_match_the_contract():
    expected = {
        UserCreated: {"user_id", "organization_id", "email", "full_name", "role", "is_active"},
        UserUpdated: {"user_id", "organization_id", "full_name", "role", "is_active", "changed"},
        UserActivated: {"user_id", "organization_id"},
        UserDeactivated: {"user_id", "organization_id"},
        UserDeleted: {"user_id", "organization_id"},
        UserSessionsRevoked: {"user_id", "organization_id", "reason", "revoked_before"},
    }
    for cls, fields in expected.items():
        assert REGISTRY[cls.event_type] is cls
        assert cls.topic == "pytake.auth.user"
        assert set(cls.json_schema()["required"]) == fields
        assert cls.event_type.startswith("pytake.auth.user.") and cls.event_type.endswith(".v1")


def test_argon2_parameters_must_follow_owasp_in_prod(tmp_path):
    from pydantic import SecretStr, ValidationError

    from pytake_auth.config import Settings, argon2_is_owasp_compliant

    assert argon2_is_owasp_compliant(19_456, 2, 1) and argon2_is_owasp_compliant(47_104, 1, 1)
    assert not argon2_is_owasp_compliant(19_456, 1, 1)
    assert not argon2_is_owasp_compliant(8_192, 4, 1)
    prod = {"env": "prod", "secret_key": SecretStr("s" * 40), "state_dir": tmp_path}
    defaults = Settings(**prod)
    assert (defaults.argon2_memory_cost_kib, defaults.argon2_time_cost) == (7_168, 5)
    assert defaults.argon2_parallelism == 1
    for weak in ({"argon2_memory_cost_kib": 4096}, {"throttle_enabled": False}):
        with pytest.raises(ValidationError):
            Settings(**prod, **weak)
    Settings(**prod, argon2_memory_cost_kib=47_104, argon2_time_cost=1)
