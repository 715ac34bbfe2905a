"""Graph API sends: auth, success shape, status webhooks in order, mark-as-read."""

from __future__ import annotations

import asyncio
import gc
import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from pytake_meta_simulator import SimulatorSettings, create_app
from pytake_meta_simulator.testing import Receiver, eventually

from .conftest import NUMBER

CUSTOMER = "5511999990000"


def text_body(to: str = CUSTOMER, **extra: Any) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"body": "Hello from PyTake"},
        **extra,
    }


async def test_send_text_answers_like_meta_and_posts_statuses_in_order(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    pnid = number["phone_number_id"]
    body = text_body(biz_opaque_callback_data="msg-42")
    resp = await sim.post(f"/v21.0/{pnid}/messages", headers=auth, json=body)
    assert resp.status_code == 200
    data = resp.json()
    wamid = data["messages"][0]["id"]
    assert wamid.startswith("wamid.")
    assert data == {
        "messaging_product": "whatsapp",
        "contacts": [{"input": CUSTOMER, "wa_id": CUSTOMER}],
        "messages": [{"id": wamid}],
    }

    [sent] = (await sim.get("/_sim/sent")).json()
    assert sent["phone_number_id"] == pnid
    assert sent["authorized"] is True
    assert sent["body"] == body
    assert sent["wamid"] == wamid
    assert sent["to"] == CUSTOMER
    assert sent["time"]

    requests = await receiver.wait_for(3)
    assert all(r.signature_valid(number["app_secret"]) for r in requests)
    for r in requests:
        value = r.json()["entry"][0]["changes"][0]["value"]
        assert r.json()["entry"][0]["id"] == number["waba_id"]
        assert value["metadata"]["phone_number_id"] == pnid

    statuses = receiver.statuses()
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    conversation_ids = {s["conversation"]["id"] for s in statuses}
    assert len(conversation_ids) == 1
    for s in statuses:
        assert s["id"] == wamid
        assert s["recipient_id"] == CUSTOMER
        assert s["timestamp"].isdigit()
        assert s["conversation"]["origin"] == {"type": "service"}
        assert s["pricing"]["pricing_model"] == "PMP"
        assert s["pricing"]["category"] == "service"
        assert isinstance(s["pricing"]["billable"], bool)
        assert s["biz_opaque_callback_data"] == "msg-42"

    async def three_recorded() -> bool:
        return len((await sim.get("/_sim/webhooks")).json()) == 3

    await eventually(three_recorded)
    hooks = (await sim.get("/_sim/webhooks")).json()
    assert [(h["kind"], h["status_code"]) for h in hooks] == [("status", 200)] * 3


async def test_a_status_webhook_not_answered_2xx_is_retried_with_backoff_like_meta(
    number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    """Meta retries a webhook its receiver did not accept (a gateway restarting): the
    same bytes again until a 2xx, and the message's next status only after that."""
    app = create_app(
        SimulatorSettings(
            webhook_url=receiver.url,
            status_delay_s=0.01,
            status_retry_first_s=0.05,
            status_retry_max_interval_s=0.1,
        )
    )
    receiver.status_code = 503
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://s") as sim,
    ):
        assert (await sim.post("/_sim/numbers", json=number)).status_code == 200
        pnid = number["phone_number_id"]
        resp = await sim.post(f"/v21.0/{pnid}/messages", headers=auth, json=text_body())
        assert resp.status_code == 200
        await receiver.wait_for(3)  # "sent", refused three times
        receiver.status_code = 200
        requests = await receiver.wait_for(6)
        bodies = [r.body for r in requests]
        assert bodies[0] == bodies[1] == bodies[2] == bodies[3]  # the same bytes
        assert [s["status"] for s in receiver.statuses()][-3:] == ["sent", "delivered", "read"]

        async def all_recorded() -> bool:
            return len((await sim.get("/_sim/webhooks")).json()) == len(requests)

        await eventually(all_recorded)
        hooks = (await sim.get("/_sim/webhooks")).json()
        assert [h["kind"] for h in hooks][:4] == [
            "status",
            "redelivery",
            "redelivery",
            "redelivery",
        ]
        assert [h["status_code"] for h in hooks][-3:] == [200, 200, 200]


async def test_to_is_normalised_to_wa_id_and_type_defaults_to_text(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    body = {"messaging_product": "whatsapp", "to": "+55 11 99999-0000", "text": {"body": "hi"}}
    resp = await sim.post(f"/v19.0/{number['phone_number_id']}/messages", headers=auth, json=body)
    assert resp.status_code == 200
    assert resp.json()["contacts"] == [{"input": "+55 11 99999-0000", "wa_id": CUSTOMER}]
    await receiver.wait_for(1)
    assert receiver.statuses()[0]["recipient_id"] == CUSTOMER
    assert "biz_opaque_callback_data" not in receiver.statuses()[0]
    [sent] = (await sim.get("/_sim/sent", params={"to": CUSTOMER})).json()
    assert sent["type"] == "text"


async def test_wrong_or_missing_token_is_401_code_190(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    url = f"/v21.0/{number['phone_number_id']}/messages"
    wrong = await sim.post(url, headers={"Authorization": "Bearer nope"}, json=text_body())
    assert wrong.status_code == 401
    error = wrong.json()["error"]
    assert error["code"] == 190
    assert error["type"] == "OAuthException"
    assert error["error_subcode"] == 463
    assert error["fbtrace_id"]
    assert error["message"]
    assert "invalid_token" in wrong.headers["www-authenticate"]

    missing = await sim.post(url, json=text_body())
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == 190

    assert (await sim.get("/_sim/sent")).json() == []
    await asyncio.sleep(0.05)
    assert receiver.received == []


async def test_unknown_number_is_400_code_100(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    resp = await sim.post("/v21.0/999999/messages", headers=auth, json=text_body())
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["code"] == 100
    assert error["type"] == "GraphMethodException"
    assert error["error_subcode"] == 33
    assert "999999" in error["message"]


async def test_bad_version_is_rejected(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    resp = await sim.post(
        f"/latest/{number['phone_number_id']}/messages", headers=auth, json=text_body()
    )
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == 2500


async def test_mark_as_read(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    url = f"/v21.0/{number['phone_number_id']}/messages"
    body = {"messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN=="}
    resp = await sim.post(url, headers=auth, json=body)
    assert resp.status_code == 200
    assert resp.json() == {"success": True}
    [mark] = (await sim.get("/_sim/reads")).json()
    assert mark["message_id"] == "wamid.IN=="
    assert mark["phone_number_id"] == number["phone_number_id"]
    assert (await sim.get("/_sim/sent")).json() == []

    bad = await sim.post(
        url, headers=auth, json={"messaging_product": "whatsapp", "status": "read"}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == 100
    await asyncio.sleep(0.05)
    assert receiver.received == []

    await sim.delete("/_sim/reads")
    assert (await sim.get("/_sim/reads")).json() == []


async def test_clear_sent_and_reset(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    url = f"/v21.0/{number['phone_number_id']}/messages"
    assert (await sim.post(url, headers=auth, json=text_body())).status_code == 200
    assert (await sim.post(url, headers=auth, json=text_body())).status_code == 200
    sent = (await sim.get("/_sim/sent")).json()
    assert len(sent) == 2
    assert sent[0]["seq"] < sent[1]["seq"]
    assert sent[0]["wamid"] != sent[1]["wamid"]

    assert (await sim.delete("/_sim/sent")).status_code == 204
    assert (await sim.get("/_sim/sent")).json() == []

    assert (await sim.post("/_sim/reset")).status_code == 204
    assert (await sim.get("/_sim/numbers")).json() == []
    assert (await sim.post(url, headers=auth, json=text_body())).status_code == 400


async def test_a_send_is_stamped_when_it_arrives_not_when_the_simulator_gets_to_it() -> None:
    """``received_at`` is where Meta would count a call; ``time`` is after the
    simulator's own work, which a busy simulator delays (here: its store's lock)."""
    app = create_app(SimulatorSettings(webhook_url="http://127.0.0.1:9/", send_statuses=False))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sim.test") as sim,
    ):
        assert (await sim.post("/_sim/numbers", json=NUMBER)).status_code == 200
        auth = {"Authorization": f"Bearer {NUMBER['access_token']}"}
        async with app.state.sim.store._lock:  # the simulator busy elsewhere for 200 ms
            call = asyncio.create_task(
                sim.post(
                    f"/v21.0/{NUMBER['phone_number_id']}/messages", headers=auth, json=text_body()
                )
            )
            await asyncio.sleep(0.2)
        assert (await call).status_code == 200
        [sent] = (await sim.get("/_sim/sent")).json()
    received, accepted = (datetime.fromisoformat(sent[k]) for k in ("received_at", "time"))
    # Stamped as the call first ran, inside the 200 ms hold (a few µs after it began).
    assert accepted - received >= timedelta(seconds=0.19)


async def test_the_loop_lag_shows_when_the_simulator_itself_was_late(sim) -> None:
    """Arrival stamps are one loop pass late; ``/_sim/loop-lag`` tells when that pass was
    late, so a benchmark can tell the simulator's own delay from the sender's."""
    await asyncio.sleep(0.05)  # the monitor has ticked
    began = time.time()
    time.sleep(0.06)  # noqa: ASYNC251 (the loop held, as a loaded box would hold it)
    await asyncio.sleep(0.02)
    lag = (await sim.get("/_sim/loop-lag", params={"since": began - 0.01})).json()
    assert lag["ticks"] > 0 and lag["period_ms"] == 5.0
    assert [late for _, late in lag["late"] if late >= 50], lag
    assert all(at >= began - 0.01 for at, _ in lag["late"])
    later = (await sim.get("/_sim/loop-lag", params={"since": time.time() + 60})).json()
    assert later["late"] == []


async def test_the_loop_lag_lists_each_full_garbage_collection(sim) -> None:
    """A full collection holds the loop (one cause of late stamps): each is listed with
    when it began and how long it took."""
    await asyncio.sleep(0.02)  # the monitor runs
    began = time.time()
    gc.collect()
    lag = (await sim.get("/_sim/loop-lag", params={"since": began})).json()
    assert lag["full_collections"]  # this one (and any CPython ran meanwhile)
    assert all(began <= at <= time.time() and took >= 0 for at, took in lag["full_collections"])
    later = (await sim.get("/_sim/loop-lag", params={"since": time.time() + 60})).json()
    assert later["full_collections"] == []
