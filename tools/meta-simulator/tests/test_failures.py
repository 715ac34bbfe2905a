"""Failure injection: synchronous Graph errors and asynchronous ``failed`` statuses."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx

from pytake_meta_simulator.testing import Receiver

ALICE = "5511911110000"
BOB = "5511922220000"


def text_to(to: str) -> dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": "hi"}}


async def test_http_mode_fails_only_the_matching_recipient_once(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    pnid = number["phone_number_id"]
    url = f"/v21.0/{pnid}/messages"
    rule = await sim.post(
        "/_sim/failures", json={"phone_number_id": pnid, "to": ALICE, "code": 131047}
    )
    assert rule.status_code == 200
    assert rule.json()["remaining"] == 1

    assert (await sim.post(url, headers=auth, json=text_to(BOB))).status_code == 200

    failed = await sim.post(url, headers=auth, json=text_to(ALICE))
    assert failed.status_code == 400
    error = failed.json()["error"]
    assert error["code"] == 131047
    assert error["message"] == "(#131047) Re-engagement message"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert "24 hours" in error["error_data"]["details"]
    assert error["fbtrace_id"]

    assert (await sim.post(url, headers=auth, json=text_to(ALICE))).status_code == 200

    sent = (await sim.get("/_sim/sent")).json()
    assert [s["to"] for s in sent] == [BOB, ALICE]
    [listed] = (await sim.get("/_sim/failures")).json()
    assert listed["triggered"] == 1
    assert listed["remaining"] == 0


async def test_http_mode_times_and_status_codes(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    pnid = number["phone_number_id"]
    url = f"/v21.0/{pnid}/messages"
    await sim.post("/_sim/failures", json={"phone_number_id": pnid, "code": 130429, "times": 2})
    for _ in range(2):
        resp = await sim.post(url, headers=auth, json=text_to(ALICE))
        assert resp.status_code == 400
        assert resp.json()["error"]["code"] == 130429
        assert resp.json()["error"]["is_transient"] is True
    assert (await sim.post(url, headers=auth, json=text_to(ALICE))).status_code == 200

    await sim.post("/_sim/failures", json={"phone_number_id": pnid, "code": 131016})
    resp = await sim.post(url, headers=auth, json=text_to(ALICE))
    assert resp.status_code == 503
    assert resp.json()["error"]["code"] == 131016

    await sim.post(
        "/_sim/failures", json={"phone_number_id": pnid, "code": 131000, "http_status": 502}
    )
    assert (await sim.post(url, headers=auth, json=text_to(ALICE))).status_code == 502

    await sim.post("/_sim/failures", json={"phone_number_id": pnid, "code": 190})
    expired = await sim.post(url, headers=auth, json=text_to(ALICE))
    assert expired.status_code == 401
    assert expired.json()["error"]["code"] == 190

    # Only the one successful send was accepted.
    assert len((await sim.get("/_sim/sent")).json()) == 1

    await sim.delete("/_sim/failures")
    assert (await sim.get("/_sim/failures")).json() == []


async def test_status_mode_answers_200_then_sent_then_failed(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    pnid = number["phone_number_id"]
    await sim.post(
        "/_sim/failures",
        json={"phone_number_id": pnid, "to": ALICE, "code": 131026, "mode": "status"},
    )
    resp = await sim.post(f"/v21.0/{pnid}/messages", headers=auth, json=text_to(ALICE))
    assert resp.status_code == 200
    wamid = resp.json()["messages"][0]["id"]

    requests = await receiver.wait_for(2)
    assert all(r.signature_valid(number["app_secret"]) for r in requests)
    statuses = receiver.statuses()
    assert [s["status"] for s in statuses] == ["sent", "failed"]
    failed = statuses[1]
    assert failed["id"] == wamid
    assert failed["recipient_id"] == ALICE
    [error] = failed["errors"]
    assert error["code"] == 131026
    assert error["title"] == "Message undeliverable"
    assert error["message"]
    assert error["error_data"]["details"]

    # No delivered/read follows a failure.
    await asyncio.sleep(0.1)
    assert len(receiver.received) == 2
    [sent] = (await sim.get("/_sim/sent")).json()
    assert sent["failure_code"] == 131026


async def test_status_mode_custom_message(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    pnid = number["phone_number_id"]
    await sim.post(
        "/_sim/failures",
        json={
            "phone_number_id": pnid,
            "code": 131047,
            "mode": "status",
            "message": "Re-engagement message",
            "details": "custom details",
        },
    )
    assert (
        await sim.post(f"/v21.0/{pnid}/messages", headers=auth, json=text_to(BOB))
    ).status_code == 200
    await receiver.wait_for(2)
    error = receiver.statuses()[1]["errors"][0]
    assert error["code"] == 131047
    assert error["error_data"] == {"details": "custom details"}


async def test_failure_rules_are_validated(sim: httpx.AsyncClient, number: dict[str, str]) -> None:
    pnid = number["phone_number_id"]
    bad_status = {"phone_number_id": pnid, "code": 1, "http_status": 200}
    assert (await sim.post("/_sim/failures", json=bad_status)).status_code == 422
    bad_mode = {"phone_number_id": pnid, "code": 1, "mode": "later"}
    assert (await sim.post("/_sim/failures", json=bad_mode)).status_code == 422
    unknown = {"phone_number_id": "nope", "code": 1}
    assert (await sim.post("/_sim/failures", json=unknown)).status_code == 404


async def test_slow_mode_accepts_at_once_and_answers_late(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    pnid = number["phone_number_id"]
    url = f"/v21.0/{pnid}/messages"
    rule = await sim.post(
        "/_sim/failures",
        json={"phone_number_id": pnid, "to": ALICE, "mode": "slow", "delay_s": 30, "times": 1},
    )
    assert rule.status_code == 200, rule.text
    assert (rule.json()["code"], rule.json()["delay_s"]) == (None, 30)

    # The client gives up long before the answer: the message is at "Meta" all the same.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(sim.post(url, headers=auth, json=text_to(ALICE)), 0.3)
        raise AssertionError("the slow answer arrived before the client's timeout")
    [accepted] = (await sim.get("/_sim/sent", params={"to": ALICE})).json()
    assert accepted["failure_code"] is None
    # Only the matching send, only once.
    assert (await sim.post(url, headers=auth, json=text_to(BOB))).status_code == 200
    assert (await sim.post(url, headers=auth, json=text_to(ALICE))).status_code == 200
    [rule_after] = (await sim.get("/_sim/failures")).json()
    assert (rule_after["remaining"], rule_after["triggered"]) == (0, 1)


async def test_slow_mode_needs_a_delay_and_no_code(
    sim: httpx.AsyncClient, number: dict[str, str]
) -> None:
    pnid = number["phone_number_id"]
    for bad in (
        {"mode": "slow"},
        {"mode": "slow", "delay_s": 1, "code": 131000},
        {"mode": "http"},
        {"mode": "slow", "delay_s": -1},
    ):
        answer = await sim.post("/_sim/failures", json={"phone_number_id": pnid, **bad})
        assert answer.status_code == 422, bad


async def test_a_slow_error_answers_late_and_accepts_nothing(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    pnid = number["phone_number_id"]
    await sim.post(
        "/_sim/failures",
        json={"phone_number_id": pnid, "code": 131016, "delay_s": 0.05},
    )
    answer = await sim.post(f"/v21.0/{pnid}/messages", headers=auth, json=text_to(ALICE))
    assert answer.status_code == 503
    assert (await sim.get("/_sim/sent")).json() == []


async def test_a_bare_5xx_has_no_graph_error_body_and_accepts_nothing(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    pnid = number["phone_number_id"]
    url = f"/v21.0/{pnid}/messages"
    rule = await sim.post("/_sim/failures", json={"phone_number_id": pnid, "http_status": 502})
    assert rule.status_code == 200, rule.text
    resp = await sim.post(url, headers=auth, json=text_to(ALICE))
    assert resp.status_code == 502
    assert resp.headers["content-type"].startswith("text/plain")
    assert (await sim.get("/_sim/sent")).json() == []
    # Without a code, only a 5xx is a bare answer; a 4xx needs Meta's code.
    refused = await sim.post("/_sim/failures", json={"phone_number_id": pnid, "http_status": 400})
    assert refused.status_code == 422


async def test_every_code_answers_metas_error_shape(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    pnid = number["phone_number_id"]
    url = f"/v21.0/{pnid}/messages"
    for code in (130429, 131000, 131016, 131026, 131047, 131051, 131056, 131057, 132005, 368):
        await sim.post("/_sim/failures", json={"phone_number_id": pnid, "code": code})
        resp = await sim.post(url, headers=auth, json=text_to(ALICE))
        error = resp.json()["error"]
        assert error["code"] == code
        assert error["message"].startswith(f"(#{code}) ")
        assert error["type"] == "OAuthException"
        assert error["error_data"]["details"]
        assert error["fbtrace_id"]
