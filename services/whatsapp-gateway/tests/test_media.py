"""Inbound media: fetched from the real simulator, verified, stored, served per organization."""

import base64
import hashlib
import logging
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from pytake_whatsapp_gateway.media.fetcher import MediaFetcher
from pytake_whatsapp_gateway.tables import media_files

from .helpers import SIM_APP_SECRET, change, connect, envelope, events, raw, signed

RECEIVED = "pytake.whatsapp.message.received.v1"
DATA = b"\xff\xd8\xff\xe0 a receipt photo " * 1000


@pytest.fixture
async def fetcher(gateway):
    app = gateway[0]
    async with httpx.AsyncClient() as client:
        yield MediaFetcher(
            app.state.settings, app.state.db, app.state.secret_box, client, app.state.media_storage
        )


async def receive_image(
    api, sim, gateway, number: dict[str, Any], wamid: str, *, sha256: str | None = None
) -> str:
    """Meta holds the bytes; a signed webhook announces the image. Returns the message id."""
    body: dict[str, Any] = {
        "phone_number_id": number["phone_number_id"],
        "mime_type": "image/jpeg",
        "data_base64": base64.b64encode(DATA).decode(),
    }
    if sha256 is not None:
        body["sha256"] = sha256
    media = (await sim.post("/_sim/media", json=body)).json()
    message = {
        "from": "5511999990000",
        "id": wamid,
        "timestamp": "1764000000",
        "type": "image",
        "image": {"id": media["id"], "mime_type": "image/jpeg", "sha256": media["sha256"]},
    }
    payload = raw(envelope([change(number["phone_number_id"], messages=[message])]))
    r = await api.post(
        "/webhooks/whatsapp", content=payload, headers=signed(payload, SIM_APP_SECRET)
    )
    assert r.status_code == 200, r.text
    [event] = [e for e in await events(gateway[0], RECEIVED) if e["data"]["wamid"] == wamid]
    return str(event["data"]["message_id"])


async def media_row(gateway, message_id: str) -> Any:
    async with gateway[0].state.db.transaction(bypass_rls=True) as s:
        return (
            await s.execute(
                select(media_files).where(media_files.c.message_id == uuid.UUID(message_id))
            )
        ).one()


async def test_media_is_fetched_verified_stored_and_served(
    api, gtokens, sim, gateway, fetcher, tmp_path
):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "701")
    message_id = await receive_image(api, sim, gateway, number, "wamid.photo")
    [event] = await events(gateway[0], RECEIVED)
    assert event["data"]["media"]["download_path"] == f"/v1/whatsapp/media/{message_id}"
    reader = gtokens.headers(organization_id=org, role="viewer")

    early = await api.get(f"/v1/whatsapp/media/{message_id}", headers=reader)
    assert early.status_code == 409 and early.json()["code"] == "media_not_ready"

    assert await fetcher.fetch_batch() == 1
    assert await fetcher.fetch_batch() == 0  # nothing left to fetch
    digest = hashlib.sha256(DATA).hexdigest()
    row = await media_row(gateway, message_id)
    assert (row.state, row.storage_key, row.sha256, row.size_bytes, row.attempts) == (
        "stored",
        f"{org}/{digest}",
        digest,
        len(DATA),
        1,
    )
    stored = tmp_path / "media" / str(org) / digest
    assert stored.read_bytes() == DATA
    assert [p.name for p in (tmp_path / "media" / str(org)).iterdir()] == [digest]  # no temp

    served = await api.get(f"/v1/whatsapp/media/{message_id}", headers=reader)
    assert served.status_code == 200
    assert served.content == DATA
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["x-content-type-options"] == "nosniff"


async def test_a_sha256_mismatch_fails_and_keeps_nothing(
    api, gtokens, sim, gateway, fetcher, tmp_path
):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "702")
    message_id = await receive_image(api, sim, gateway, number, "wamid.tampered", sha256="0" * 64)

    assert await fetcher.fetch_batch() == 1
    row = await media_row(gateway, message_id)
    assert row.state == "failed" and row.storage_key is None
    assert row.error.startswith("sha256 mismatch")
    media_dir = tmp_path / "media"
    assert not media_dir.exists() or list(media_dir.rglob("*")) in ([], [media_dir / str(org)])
    answer = await api.get(
        f"/v1/whatsapp/media/{message_id}", headers=gtokens.headers(organization_id=org)
    )
    assert answer.status_code == 410
    assert answer.json()["code"] == "media_unavailable"
    assert "sha256 mismatch" in answer.json()["detail"]


async def test_another_organizations_media_is_not_found(api, gtokens, sim, gateway, fetcher):
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "703")
    message_id = await receive_image(api, sim, gateway, number, "wamid.private")
    assert await fetcher.fetch_batch() == 1
    intruder = gtokens.headers(organization_id=uuid.uuid4())
    answer = await api.get(f"/v1/whatsapp/media/{message_id}", headers=intruder)
    assert answer.status_code == 404
    assert DATA[:20] not in answer.content
    unknown = await api.get(f"/v1/whatsapp/media/{uuid.uuid4()}", headers=intruder)
    assert unknown.status_code == 404


async def test_a_meta_outage_is_retried_later(api, gtokens, sim, gateway, fetcher, simulator):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "704")
    message_id = await receive_image(api, sim, gateway, number, "wamid.later")
    fetcher.graph.base_url = "http://127.0.0.1:9"  # nothing listens: connection refused
    assert await fetcher.fetch_batch() == 1
    row = await media_row(gateway, message_id)
    assert row.state == "pending" and row.attempts == 1 and row.error
    assert await fetcher.fetch_batch() == 0  # backing off
    async with gateway[0].state.db.transaction(bypass_rls=True) as s:
        await s.execute(media_files.update().values(next_attempt_at=media_files.c.created_at))
    fetcher.graph.base_url = simulator[1]
    assert await fetcher.fetch_batch() == 1
    row = await media_row(gateway, message_id)
    assert (row.state, row.attempts, row.error) == ("stored", 2, None)


async def test_signed_media_urls_never_reach_the_logs(api, gtokens, sim, gateway, fetcher, caplog):
    """Meta's download URL carries its signature in the query string (``hash=``): the
    HTTP client's request log keeps the path only, at every level."""
    number = await connect(api, gtokens, sim, gateway, uuid.uuid4(), "705")
    await receive_image(api, sim, gateway, number, "wamid.logged")
    caplog.set_level(logging.DEBUG)
    assert await fetcher.fetch_batch() == 1
    lines = [
        f"{r.name} {r.getMessage()} {r.__dict__}" for r in caplog.records if r.name != "asyncio"
    ]
    downloads = [line for line in lines if "/whatsapp_business/attachments/" in line]
    assert downloads, "the download request is logged (by path)"
    assert all("[redacted]" in line for line in downloads)
    for line in lines:
        assert "hash=" not in line and "mid=" not in line and "ext=" not in line, line
