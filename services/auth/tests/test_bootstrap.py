import io

import pytest
from sqlalchemy import select

from pytake_auth import bootstrap
from pytake_common.mechanics import outbox


async def outbox_events(app) -> list[dict]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        return (await s.execute(select(outbox.c.event).order_by(outbox.c.id))).scalars().all()


async def test_first_super_admin_creates_the_platform_organization_once(app, api, make_settings):
    settings = make_settings()
    first = await bootstrap.create_super_admin(
        settings, email="Root@Example.com", full_name="Root", password=api.password
    )
    assert first.created and first.organization_created
    again = await bootstrap.create_super_admin(
        settings, email="root@example.com", full_name="Root", password="another password!"
    )
    assert again == bootstrap.Outcome(first.user_id, first.organization_id, False, False)
    second = await bootstrap.create_super_admin(
        settings, email="ops@example.com", full_name="Ops", password=api.password
    )
    assert second.created and not second.organization_created
    assert second.organization_id == first.organization_id

    registered, created = await outbox_events(app)
    assert registered["type"] == "pytake.auth.user.registered.v1"
    assert registered["data"] == {
        "user_id": str(first.user_id),
        "organization_id": str(first.organization_id),
        "email": "root@example.com",
        "full_name": "Root",
        "role": "super_admin",
        "organization_name": "PyTake Platform",
    }
    assert created["type"] == "pytake.auth.user.created.v1"
    assert created["data"]["role"] == "super_admin"

    login = await api.login("root@example.com")
    assert login.status_code == 200 and login.json()["user"]["role"] == "super_admin"
    # A super_admin may hand out the role (an org_admin may not: see test_users_admin).
    r = await api.create_user(login.json()["access_token"], role="super_admin")
    assert r.status_code == 201 and r.json()["organization_id"] == str(first.organization_id)

    taken = await api.registered()
    with pytest.raises(bootstrap.BootstrapError, match="org_admin"):
        await bootstrap.create_super_admin(
            settings, email=taken["user"]["email"], full_name="X", password=api.password
        )
    with pytest.raises(bootstrap.BootstrapError, match="at least"):
        await bootstrap.create_super_admin(
            settings, email="weak@example.com", full_name="X", password="short"
        )


def test_the_command_reads_the_password_from_env_or_stdin_never_argv(
    database_url, monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("PYTAKE_OWN_DATABASE_URL", database_url)
    monkeypatch.setenv("PYTAKE_ENV", "test")
    monkeypatch.setenv("PYTAKE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("PYTAKE_ARGON2_MEMORY_COST_KIB", "1024")
    monkeypatch.setenv("PYTAKE_ARGON2_TIME_COST", "1")
    monkeypatch.delenv(bootstrap.PASSWORD_ENV, raising=False)

    args = ["--email", "boot@example.com", "--full-name", "Boot"]
    assert bootstrap.main(args, stdin=io.StringIO("from stdin passphrase\n")) == 0
    assert "created" in capsys.readouterr().out
    monkeypatch.setenv(bootstrap.PASSWORD_ENV, "from env passphrase")
    assert bootstrap.main(args, stdin=io.StringIO("")) == 0
    assert "already exists" in capsys.readouterr().out
    assert bootstrap.main(["--email", "b2@example.com", "--full-name", "B"]) == 0
    monkeypatch.setenv(bootstrap.PASSWORD_ENV, "short")
    assert bootstrap.main(["--email", "b3@example.com", "--full-name", "B"]) == 1
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        bootstrap.main([*args, "--password", "in argv"])
    assert exit_.value.code == 2
