"""Media lookup (``GET /{version}/{media_id}``) and download, and number profiles."""

from __future__ import annotations

import base64
import hashlib

import httpx

DATA = b"\x89PNG\r\n\x1a\n fake image bytes"


async def test_media_lookup_and_download(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    resp = await sim.post(
        "/_sim/media",
        json={
            "phone_number_id": number["phone_number_id"],
            "mime_type": "image/png",
            "data_base64": base64.b64encode(DATA).decode(),
        },
    )
    assert resp.status_code == 200
    media_id = resp.json()["id"]
    assert media_id.isdigit()

    meta = await sim.get(f"/v21.0/{media_id}", headers=auth)
    assert meta.status_code == 200
    info = meta.json()
    assert info["id"] == media_id
    assert info["messaging_product"] == "whatsapp"
    assert info["mime_type"] == "image/png"
    assert info["sha256"] == hashlib.sha256(DATA).hexdigest()
    assert info["file_size"] == len(DATA)

    content = await sim.get(info["url"], headers=auth)
    assert content.status_code == 200
    assert content.content == DATA
    assert content.headers["content-type"] == "image/png"

    denied = await sim.get(info["url"], headers={"Authorization": "Bearer nope"})
    assert denied.status_code == 401
    assert denied.json()["error"]["code"] == 190
    assert (await sim.get(f"/v21.0/{media_id}")).status_code == 401


async def test_media_with_chosen_id_and_bad_base64(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    body = {
        "phone_number_id": number["phone_number_id"],
        "mime_type": "audio/ogg",
        "data_base64": base64.b64encode(b"ogg").decode(),
        "media_id": "1234567890123456",
    }
    assert (await sim.post("/_sim/media", json=body)).json()["id"] == "1234567890123456"
    assert (await sim.get("/v21.0/1234567890123456", headers=auth)).json()["file_size"] == 3

    bad = await sim.post("/_sim/media", json={**body, "data_base64": "%%%"})
    assert bad.status_code == 422


async def test_unknown_object_and_number_profile(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    unknown = await sim.get("/v21.0/424242", headers=auth)
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == 100
    assert unknown.json()["error"]["type"] == "GraphMethodException"

    profile = await sim.get(f"/v21.0/{number['phone_number_id']}", headers=auth)
    assert profile.status_code == 200
    assert profile.json()["display_phone_number"] == number["display_phone_number"]
    assert profile.json()["id"] == number["phone_number_id"]


async def test_media_can_announce_a_wrong_sha256(
    sim: httpx.AsyncClient, number: dict[str, str], auth: dict[str, str]
) -> None:
    wrong = "0" * 64
    body = {
        "phone_number_id": number["phone_number_id"],
        "mime_type": "image/jpeg",
        "data_base64": base64.b64encode(DATA).decode(),
        "sha256": wrong,
    }
    created = (await sim.post("/_sim/media", json=body)).json()
    info = (await sim.get(f"/v21.0/{created['id']}", headers=auth)).json()
    assert info["sha256"] == wrong
    assert (await sim.get(info["url"], headers=auth)).content == DATA
    assert (await sim.post("/_sim/media", json={**body, "sha256": "xyz"})).status_code == 422
