"""Inbound webhooks: envelope, signature over the exact bytes, raw posts, redelivery."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from pytake_meta_simulator.testing import Receiver

SECRET_FIELDS = ("access_token", "app_secret")


async def test_numbers_upsert_and_list_hides_secrets(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    changed = {**number, "display_phone_number": "15550000000"}
    resp = await sim.post("/_sim/numbers", json=changed)
    assert resp.status_code == 200

    listed = (await sim.get("/_sim/numbers")).json()
    assert len(listed) == 1
    assert listed[0]["phone_number_id"] == number["phone_number_id"]
    assert listed[0]["display_phone_number"] == "15550000000"
    assert listed[0]["webhook_url"] == receiver.url
    text = json.dumps(listed)
    for key in SECRET_FIELDS:
        assert key not in text
        assert number[key] not in text


async def test_inbound_text_is_meta_shaped_and_signed_over_exact_bytes(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    text = "Olá / tudo bem? 👋"
    resp = await sim.post(
        "/_sim/inbound",
        json={
            "phone_number_id": number["phone_number_id"],
            "from_wa_id": "5511999990000",
            "profile_name": "Maria",
            "text": text,
        },
    )
    assert resp.status_code == 200
    out = resp.json()
    assert out["status_code"] == 200
    assert out["wamid"].startswith("wamid.")

    [req] = await receiver.wait_for(1)
    assert req.path == "/webhooks/whatsapp"
    assert req.headers["content-type"] == "application/json"
    assert req.signature_valid(number["app_secret"])
    assert not req.signature_valid("another-secret")
    # Meta escapes non-ASCII and slashes: re-serialised JSON would not match the signature.
    assert b"\\u00e1" in req.body
    assert b"\\/" in req.body
    reserialised = json.dumps(req.json()).encode()
    resigned = hmac.new(number["app_secret"].encode(), reserialised, hashlib.sha256).hexdigest()
    assert req.headers["x-hub-signature-256"] != f"sha256={resigned}"

    payload = req.json()
    assert payload == out["payload"]
    assert payload["object"] == "whatsapp_business_account"
    [entry] = payload["entry"]
    assert entry["id"] == number["waba_id"]
    [change] = entry["changes"]
    assert change["field"] == "messages"
    value = change["value"]
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == {
        "display_phone_number": number["display_phone_number"],
        "phone_number_id": number["phone_number_id"],
    }
    assert value["contacts"] == [{"profile": {"name": "Maria"}, "wa_id": "5511999990000"}]
    [message] = value["messages"]
    assert message["from"] == "5511999990000"
    assert message["id"] == out["wamid"]
    assert message["type"] == "text"
    assert message["text"] == {"body": text}
    assert message["timestamp"].isdigit()

    [hook] = (await sim.get("/_sim/webhooks")).json()
    assert hook["kind"] == "message"
    assert hook["status_code"] == 200
    assert hook["signature"] == req.headers["x-hub-signature-256"]


async def test_inbound_with_given_wamid_timestamp_and_user_id(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    resp = await sim.post(
        "/_sim/inbound",
        json={
            "phone_number_id": number["phone_number_id"],
            "from_wa_id": "447700900123",
            "profile_name": "Sam",
            "text": "hi",
            "wamid": "wamid.FIXED==",
            "timestamp": 1700000000,
            "user_id": "US.13491208655302741918",
        },
    )
    assert resp.json()["wamid"] == "wamid.FIXED=="
    [req] = await receiver.wait_for(1)
    value = req.json()["entry"][0]["changes"][0]["value"]
    assert value["contacts"][0]["user_id"] == "US.13491208655302741918"
    assert value["messages"][0]["id"] == "wamid.FIXED=="
    assert value["messages"][0]["timestamp"] == "1700000000"


async def test_number_webhook_url_overrides_default(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver, other_receiver: Receiver
) -> None:
    await sim.post("/_sim/numbers", json={**number, "webhook_url": other_receiver.url})
    resp = await sim.post(
        "/_sim/inbound",
        json={
            "phone_number_id": number["phone_number_id"],
            "from_wa_id": "1",
            "profile_name": "A",
            "text": "x",
        },
    )
    assert resp.json()["status_code"] == 200
    assert len(await other_receiver.wait_for(1)) == 1
    assert receiver.received == []


async def test_receiver_errors_and_unreachable_urls_are_reported(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    receiver.status_code = 500
    body = {
        "phone_number_id": number["phone_number_id"],
        "from_wa_id": "1",
        "profile_name": "A",
        "text": "x",
    }
    assert (await sim.post("/_sim/inbound", json=body)).json()["status_code"] == 500

    await sim.post("/_sim/numbers", json={**number, "webhook_url": "http://127.0.0.1:1/hook"})
    out = (await sim.post("/_sim/inbound", json=body)).json()
    assert out["status_code"] is None
    assert out["error"]

    hooks = (await sim.get("/_sim/webhooks")).json()
    assert [h["status_code"] for h in hooks] == [500, None]


async def test_inbound_for_unknown_number_is_404(sim: httpx.AsyncClient) -> None:
    resp = await sim.post(
        "/_sim/inbound",
        json={"phone_number_id": "nope", "from_wa_id": "1", "profile_name": "A", "text": "x"},
    )
    assert resp.status_code == 404


async def test_raw_delivery_sign_modes(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    payload = {"object": "whatsapp_business_account", "entry": []}
    pnid = number["phone_number_id"]
    results = []
    for sign in (True, False, "wrong"):
        resp = await sim.post(
            "/_sim/deliveries/raw", json={"phone_number_id": pnid, "payload": payload, "sign": sign}
        )
        assert resp.status_code == 200
        results.append(resp.json())
    assert [r["status_code"] for r in results] == [200, 200, 200]

    signed, unsigned, wrong = await receiver.wait_for(3)
    assert signed.signature_valid(number["app_secret"])
    assert "x-hub-signature-256" not in unsigned.headers
    assert wrong.headers["x-hub-signature-256"].startswith("sha256=")
    assert not wrong.signature_valid(number["app_secret"])
    assert signed.json() == payload


async def test_raw_delivery_posts_exact_raw_text(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    resp = await sim.post(
        "/_sim/deliveries/raw",
        json={"phone_number_id": number["phone_number_id"], "raw": '{"not json', "sign": True},
    )
    assert resp.json()["status_code"] == 200
    [req] = await receiver.wait_for(1)
    assert req.body == b'{"not json'
    assert req.signature_valid(number["app_secret"])


async def test_raw_delivery_needs_exactly_one_body(
    sim: httpx.AsyncClient, number: dict[str, str]
) -> None:
    resp = await sim.post("/_sim/deliveries/raw", json={"phone_number_id": "x"})
    assert resp.status_code == 422


async def test_redeliver_posts_identical_bytes_and_signature(
    sim: httpx.AsyncClient, number: dict[str, str], receiver: Receiver
) -> None:
    await sim.post(
        "/_sim/inbound",
        json={
            "phone_number_id": number["phone_number_id"],
            "from_wa_id": "1",
            "profile_name": "A",
            "text": "again",
        },
    )
    [hook] = (await sim.get("/_sim/webhooks")).json()
    resp = await sim.post(f"/_sim/webhooks/{hook['seq']}/redeliver")
    assert resp.status_code == 200
    assert resp.json()["status_code"] == 200

    first, second = await receiver.wait_for(2)
    assert first.body == second.body
    assert first.headers["x-hub-signature-256"] == second.headers["x-hub-signature-256"]
    kinds = [h["kind"] for h in (await sim.get("/_sim/webhooks")).json()]
    assert kinds == ["message", "redelivery"]

    assert (await sim.post("/_sim/webhooks/9999/redeliver")).status_code == 404
    await sim.delete("/_sim/webhooks")
    assert (await sim.get("/_sim/webhooks")).json() == []
