"""Templates: create, list with cursor paging, delete, and the review control endpoint."""

from __future__ import annotations

from typing import Any

import httpx

from pytake_meta_simulator.testing import Receiver

BODY = [{"type": "BODY", "text": "Hello {{1}}"}]


def template(name: str, language: str = "en_US", category: str = "UTILITY") -> dict[str, Any]:
    return {"name": name, "language": language, "category": category, "components": BODY}


async def test_create_list_with_paging_and_delete(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    path = f"/v21.0/{number['waba_id']}/message_templates"
    for i in range(5):
        created = await sim.post(path, json=template(f"t_{i}"), headers=auth)
        assert created.status_code == 200, created.text
        answer = created.json()
        assert answer["status"] == "PENDING" and answer["category"] == "UTILITY"
        assert answer["id"].isdigit()

    seen: list[str] = []
    url: str | None = f"http://sim.test{path}?limit=2"
    pages = 0
    while url is not None:
        page = (await sim.get(url, headers=auth)).json()
        pages += 1
        seen.extend(t["name"] for t in page["data"])
        assert set(page["paging"]["cursors"]) == {"before", "after"}
        url = page["paging"].get("next")
        if url is not None:
            assert url.startswith("http://sim.test/v21.0/")
    assert pages == 3
    assert seen == [f"t_{i}" for i in range(5)]
    first = (await sim.get(path, headers=auth)).json()["data"][0]
    assert first["components"] == BODY and first["language"] == "en_US"

    deleted = await sim.delete(path, params={"name": "t_0"}, headers=auth)
    assert deleted.json() == {"success": True}
    assert len((await sim.get(path, headers=auth)).json()["data"]) == 4
    again = await sim.delete(path, params={"name": "t_0"}, headers=auth)
    assert again.status_code == 400 and again.json()["error"]["code"] == 100


async def test_validation_duplicates_and_tokens(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    path = f"/v21.0/{number['waba_id']}/message_templates"
    assert (await sim.post(path, json=template("order_ready"), headers=auth)).status_code == 200
    duplicate = await sim.post(path, json=template("order_ready"), headers=auth)
    assert duplicate.status_code == 400
    assert duplicate.json()["error"]["error_subcode"] == 2388024
    other_language = await sim.post(path, json=template("order_ready", "pt_BR"), headers=auth)
    assert other_language.status_code == 200
    for bad in (
        template("Bad Name"),
        template("ok", category="SPAM"),
        {**template("ok"), "components": []},
    ):
        answer = await sim.post(path, json=bad, headers=auth)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == 100
    denied = await sim.get(path, headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 401 and denied.json()["error"]["code"] == 190
    unknown = await sim.get("/v21.0/999/message_templates", headers=auth)
    assert unknown.status_code == 400 and unknown.json()["error"]["error_subcode"] == 33
    empty = (await sim.get(path, params={"after": "aWR4Ojk5"}, headers=auth)).json()
    assert empty == {"data": []}


async def test_review_flips_status_and_posts_a_signed_webhook(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str], receiver: Receiver
) -> None:
    path = f"/v21.0/{number['waba_id']}/message_templates"
    created = (await sim.post(path, json=template("welcome"), headers=auth)).json()
    flipped = await sim.post(
        f"/_sim/templates/{number['waba_id']}/welcome/status", json={"status": "APPROVED"}
    )
    assert flipped.status_code == 200, flipped.text
    [request] = await receiver.wait_for(1)
    assert request.signature_valid(number["app_secret"])
    change = request.json()["entry"][0]["changes"][0]
    assert change["field"] == "message_template_status_update"
    assert change["value"] == {
        "event": "APPROVED",
        "message_template_id": int(created["id"]),
        "message_template_name": "welcome",
        "message_template_language": "en_US",
        "reason": "NONE",
    }
    assert (await sim.get(path, headers=auth)).json()["data"][0]["status"] == "APPROVED"
    missing = await sim.post(
        f"/_sim/templates/{number['waba_id']}/nope/status", json={"status": "APPROVED"}
    )
    assert missing.status_code == 404
