"""The intake's in-memory directory of numbers (webhooks/directory.py): deliveries of
remembered numbers skip the lookup, and every change of a number reaches it."""

import uuid

import asyncpg
import pytest

from pytake_common.pgtenant import asyncpg_dsn
from pytake_whatsapp_gateway.webhooks import intake as intake_module
from pytake_whatsapp_gateway.webhooks.directory import NumberDirectory
from pytake_whatsapp_gateway.webhooks.signature import KnownNumber

from .helpers import (
    change,
    counts,
    envelope,
    events,
    eventually,
    raw,
    register,
    signed,
    text_message,
)

SECRET, ROTATED = "secret-of-the-app", "rotated-secret-of-the-app"
RECEIVED = "pytake.whatsapp.message.received.v1"


@pytest.fixture
def lookups(monkeypatch):
    """How many times the intake looked numbers up in the database."""
    calls: list[frozenset[str]] = []
    real = intake_module._numbers_named

    async def counted(session, phone_number_ids, waba_ids):
        calls.append(phone_number_ids)
        return await real(session, phone_number_ids, waba_ids)

    monkeypatch.setattr(intake_module, "_numbers_named", counted)
    return calls


async def heard(directory: NumberDirectory, action):
    """Run ``action`` (a coroutine changing numbers) and wait for its notification: a
    lookup racing it would (rightly) not be remembered. Returns what ``action`` did."""
    generation = directory.generation
    done = await action
    await eventually(lambda: directory.generation > generation)
    return done


async def remembered(client, tokens, directory, org: uuid.UUID):
    """Number 100 of ``org``, registered and remembered after its first delivery."""
    number = await heard(directory, register(client, tokens, org, "100", app_secret=SECRET))
    assert (await post(client, delivery("wamid.1"), SECRET)).status_code == 200
    assert directory.get(["100"])
    return number


def count_hmacs(monkeypatch) -> list[str]:
    """The secrets the intake computes an HMAC with, from now on."""
    hmacs: list[str] = []
    real = intake_module.verifies

    def counted(body, digest, secret):
        hmacs.append(secret)
        return real(body, digest, secret)

    monkeypatch.setattr(intake_module, "verifies", counted)
    return hmacs


def delivery(wamid: str, phone_number_id: str = "100") -> bytes:
    return raw(envelope([change(phone_number_id, messages=[text_message(wamid)])]))


async def post(client, body: bytes, secret: str):
    return await client.post("/webhooks/whatsapp", content=body, headers=signed(body, secret))


async def test_remembered_numbers_are_not_looked_up_and_record_the_same(
    app, client, tokens, directory, lookups
):
    org = uuid.uuid4()
    await heard(directory, register(client, tokens, org, "100", app_secret=SECRET))
    assert (await post(client, delivery("wamid.1"), SECRET)).status_code == 200
    assert len(lookups) == 1
    [remembered] = directory.get(["100"])
    assert remembered.organization_id == org

    for _ in range(3):  # Meta's retries of the second delivery: deduplicated
        assert (await post(client, delivery("wamid.2"), SECRET)).status_code == 200
    assert len(lookups) == 1
    c = await counts(app)
    assert c["webhook_deliveries"] == 4 and c["inbound_messages"] == 2
    received = await events(app, RECEIVED)
    assert [e["data"]["wamid"] for e in received] == ["wamid.1", "wamid.2"]
    assert {e["tenantid"] for e in received} == {str(org)}
    assert received[0]["data"].keys() == received[1]["data"].keys()

    # A wrong signature is refused after the database is asked (not from memory alone).
    assert (await post(client, delivery("wamid.3"), "not-the-secret")).status_code == 401
    assert len(lookups) == 2
    assert (await counts(app))["inbound_messages"] == 2


async def test_a_rotated_app_secret_is_used_at_once(app, client, tokens, directory):
    org = uuid.uuid4()
    number = await remembered(client, tokens, directory, org)
    r = await client.patch(
        f"/v1/whatsapp/numbers/{number['id']}",
        json={"app_secret": ROTATED},
        headers=tokens.headers(organization_id=org),
    )
    assert r.status_code == 200, r.text
    # Whether or not the notification arrived yet: the new secret verifies...
    assert (await post(client, delivery("wamid.2"), ROTATED)).status_code == 200
    box = app.state.secret_box
    await eventually(
        lambda: all(box.decrypt(n.app_secret_enc) == ROTATED for n in directory.get(["100"]) or [])
    )
    # ...and the old one no longer does.
    assert (await post(client, delivery("wamid.3"), SECRET)).status_code == 401
    assert (await counts(app))["inbound_messages"] == 2


async def test_a_removed_number_is_forgotten(app, client, tokens, directory):
    org = uuid.uuid4()
    number = await remembered(client, tokens, directory, org)
    r = await client.delete(
        f"/v1/whatsapp/numbers/{number['id']}", headers=tokens.headers(organization_id=org)
    )
    assert r.status_code == 204
    await eventually(lambda: directory.get(["100"]) is None)
    assert (await post(client, delivery("wamid.2"), SECRET)).status_code == 200
    assert (await counts(app))["inbound_messages"] == 1  # acknowledged, not stored


async def test_a_lost_listener_stops_serving_until_it_is_back(app, client, tokens, directory):
    await remembered(client, tokens, directory, uuid.uuid4())
    conn = await asyncpg.connect(asyncpg_dsn(app.state.db.url))
    try:
        killed = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%pytake_numbers%' AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    assert killed >= 1
    await eventually(lambda: not directory.live)
    assert directory.get(["100"]) is None  # nothing heard meanwhile: nothing trusted
    await eventually(lambda: directory.live)  # it reconnects by itself
    assert directory.get(["100"]) is None  # and starts empty
    assert (await post(client, delivery("wamid.2"), SECRET)).status_code == 200
    assert (await counts(app))["inbound_messages"] == 2


def test_a_lookup_that_raced_a_change_is_not_remembered():
    directory = NumberDirectory("postgresql+asyncpg://u@localhost/db")
    directory.live = True
    found = [KnownNumber(uuid.uuid4(), uuid.uuid4(), "100", "W", "+1", None)]
    generation = directory.generation
    directory.forget("100")  # a notification while the lookup ran
    directory.put(generation, ["100"], found)
    assert directory.get(["100"]) is None
    directory.put(directory.generation, ["100", "200"], found)
    assert directory.get(["100"]) == found
    assert directory.get(["100", "200"]) is None  # unknown ids are never remembered
    directory.live = False
    assert directory.get(["100"]) is None


async def test_remembered_numbers_of_many_apps_cost_no_hmac(
    app, client, tokens, directory, monkeypatch
):
    """A body naming more apps' numbers than one delivery can carry is refused without
    an HMAC over it, remembered or not (the cap of the lookup path holds on this one)."""
    org = uuid.uuid4()
    ids = [str(100 + i) for i in range(intake_module.MAX_CANDIDATE_SECRETS + 1)]
    for i, pnid in enumerate(ids):
        await heard(directory, register(client, tokens, org, pnid, app_secret=f"{SECRET}-{i}"))
        assert (await post(client, delivery(f"wamid.{pnid}", pnid), f"{SECRET}-{i}")).is_success
    assert len(directory.get(ids) or []) == len(ids)
    hmacs = count_hmacs(monkeypatch)
    body = raw(envelope([change(pnid, messages=[text_message(f"w.{pnid}")]) for pnid in ids]))
    assert (await post(client, body, f"{SECRET}-0")).status_code == 401
    assert hmacs == []


async def test_statuses_of_remembered_numbers_are_verified_once(
    app, client, tokens, directory, monkeypatch
):
    """Statuses take the general path straight away (one HMAC, one parse)."""
    await remembered(client, tokens, directory, uuid.uuid4())
    hmacs = count_hmacs(monkeypatch)
    status = {"id": "wamid.out", "status": "delivered", "timestamp": "1764000000"}
    body = raw(envelope([change("100", statuses=[{**status, "recipient_id": "5511"}])]))
    assert (await post(client, body, SECRET)).status_code == 200
    assert hmacs == [SECRET]
    assert (await counts(app))["status_updates"] == 1
