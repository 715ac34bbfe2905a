"""Reads of the caller's organization wait for it to be created from the sign-up."""

import asyncio
import time
import uuid

from .helpers import deliver, registered


def waiting(app, settings, wait_s: float) -> None:
    app.state.settings = settings.model_copy(update={"organization_wait_s": wait_s})


async def test_reads_wait_for_an_organization_still_being_created(app, settings, client, tokens):
    waiting(app, settings, 5.0)
    org = uuid.uuid4()
    reader = tokens.headers(organization_id=org, role="viewer")
    admin = tokens.headers(organization_id=org, role="org_admin")
    started = time.monotonic()
    reads = [
        asyncio.ensure_future(client.get("/v1/organizations/me", headers=reader)),
        asyncio.ensure_future(client.get("/v1/organizations/me/usage", headers=reader)),
        asyncio.ensure_future(client.get("/v1/organizations/me/stats", headers=reader)),
        asyncio.ensure_future(
            client.patch("/v1/organizations/me", json={"name": "Renamed"}, headers=admin)
        ),
    ]
    await asyncio.sleep(0.6)
    assert not any(r.done() for r in reads)  # still waiting, not answered 404
    await deliver(app, settings, registered(org, "Late Co"))  # the event arrives
    me, usage, stats, patched = await asyncio.gather(*reads)
    elapsed = time.monotonic() - started
    assert me.status_code == 200, me.text
    assert me.json()["id"] == str(org)
    assert usage.status_code == 200, usage.text
    assert stats.status_code == 200, stats.text
    assert patched.status_code == 200 and patched.json()["name"] == "Renamed", patched.text
    assert 0.6 <= elapsed < 2.0, elapsed


async def test_an_organization_that_never_appears_is_a_clear_503(app, settings, client, tokens):
    waiting(app, settings, 0.5)
    headers = tokens.headers(organization_id=uuid.uuid4())
    for path in ("/v1/organizations/me", "/v1/organizations/me/usage"):
        started = time.monotonic()
        r = await client.get(path, headers=headers)
        elapsed = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "organization_pending"
        assert "retry" in r.json()["detail"]
        assert int(r.headers["retry-after"]) >= 1
        assert 0.5 <= elapsed < 1.5, elapsed


async def test_an_existing_organization_is_answered_without_waiting(app, settings, client, tokens):
    waiting(app, settings, 5.0)
    org = uuid.uuid4()
    await deliver(app, settings, registered(org))
    started = time.monotonic()
    r = await client.get("/v1/organizations/me", headers=tokens.headers(organization_id=org))
    assert r.status_code == 200 and time.monotonic() - started < 0.5
