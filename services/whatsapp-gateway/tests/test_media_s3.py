"""Inbound media kept in an S3-compatible bucket: moto's standalone S3 server stands in
for S3/MinIO/R2 (as the simulator stands in for Meta), spoken to over HTTP by aiobotocore."""

import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from pytake_meta_simulator.testing import serve
from pytake_whatsapp_gateway.app import create_app
from pytake_whatsapp_gateway.media.fetcher import MediaFetcher
from pytake_whatsapp_gateway.media.storage import MediaRejected, S3MediaStorage
from pytake_whatsapp_gateway.tables import media_files

from .helpers import connect
from .test_media import DATA, media_row, receive_image

BUCKET = "pytake-media"
PREFIX = "inbound/"
KEY_ID, SECRET = "AKIAPYTAKETEST", "s3-secret-never-logged-0123456789"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def s3_url():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
async def s3(s3_url):
    """A raw client on the server and a fresh bucket for the test."""
    async with get_session().create_client(
        "s3",
        endpoint_url=s3_url,
        region_name="us-east-1",
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    ) as client:
        await client.create_bucket(Bucket=BUCKET)
        yield client
        listed = await client.list_objects_v2(Bucket=BUCKET)
        for obj in listed.get("Contents", []):
            await client.delete_object(Bucket=BUCKET, Key=obj["Key"])
        await client.delete_bucket(Bucket=BUCKET)


def s3_settings(s3_url: str) -> dict[str, Any]:
    return {
        "media_storage": "s3",
        "media_s3_bucket": BUCKET,
        "media_s3_prefix": PREFIX,
        "media_s3_endpoint_url": s3_url,
        "media_s3_region": "us-east-1",
        "media_s3_access_key_id": KEY_ID,
        "media_s3_secret_access_key": SECRET,
        "media_s3_addressing_style": "path",
    }


@pytest.fixture
async def gateway(settings, simulator, s3_url, s3):
    """The gateway pointed at the simulator, keeping media in the bucket."""
    application = create_app(
        settings.model_validate(
            {**settings.model_dump(), "graph_api_base": simulator[1], **s3_settings(s3_url)}
        )
    )
    async with serve(application, path="/webhooks/whatsapp") as webhook_url:
        yield application, webhook_url
    await application.state.media_storage.aclose()
    await application.state.db.dispose()


@pytest.fixture
async def downloads():
    """The fetcher's HTTP client, counting media downloads (the simulator's attachments)."""
    seen: list[str] = []

    async def count(request: httpx.Request) -> None:
        if "mid=" in str(request.url):
            seen.append(str(request.url))

    async with httpx.AsyncClient(event_hooks={"request": [count]}) as client:
        yield client, seen


@pytest.fixture
def fetcher(gateway, downloads):
    app = gateway[0]
    return MediaFetcher(
        app.state.settings,
        app.state.db,
        app.state.secret_box,
        downloads[0],
        app.state.media_storage,
    )


async def objects(s3) -> dict[str, int]:
    listed = await s3.list_objects_v2(Bucket=BUCKET)
    return {o["Key"]: o["Size"] for o in listed.get("Contents", [])}


async def test_media_is_stored_in_the_bucket_and_served(api, gtokens, sim, gateway, fetcher, s3):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "711")
    message_id = await receive_image(api, sim, gateway, number, "wamid.s3photo")
    assert await fetcher.fetch_batch() == 1

    digest = hashlib.sha256(DATA).hexdigest()
    row = await media_row(gateway, message_id)
    assert (row.state, row.storage_key, row.sha256, row.size_bytes) == (
        "stored",
        f"{org}/{digest}",
        digest,
        len(DATA),
    )
    assert await objects(s3) == {f"{PREFIX}{org}/{digest}": len(DATA)}
    kept = await s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}{org}/{digest}")
    async with kept["Body"] as body:
        assert await body.read() == DATA

    served = await api.get(
        f"/v1/whatsapp/media/{message_id}",
        headers=gtokens.headers(organization_id=org, role="viewer"),
    )
    assert served.status_code == 200
    assert served.content == DATA
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["content-length"] == str(len(DATA))
    assert served.headers["etag"] == f'"{digest}"'

    intruder = gtokens.headers(organization_id=uuid.uuid4())
    assert (await api.get(f"/v1/whatsapp/media/{message_id}", headers=intruder)).status_code == 404


async def test_a_missing_object_is_gone_not_an_error(api, gtokens, sim, gateway, fetcher, s3):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "712")
    message_id = await receive_image(api, sim, gateway, number, "wamid.s3lost")
    assert await fetcher.fetch_batch() == 1
    [key] = await objects(s3)
    await s3.delete_object(Bucket=BUCKET, Key=key)  # e.g. a retention rule removed it

    answer = await api.get(
        f"/v1/whatsapp/media/{message_id}", headers=gtokens.headers(organization_id=org)
    )
    assert answer.status_code == 410
    assert answer.json()["code"] == "media_unavailable"


async def test_the_same_media_twice_is_stored_and_downloaded_once_per_organization(
    api, gtokens, sim, gateway, fetcher, s3, downloads
):
    org, other = uuid.uuid4(), uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "713")
    first = await receive_image(api, sim, gateway, number, "wamid.s3first")
    assert await fetcher.fetch_batch() == 1
    # Another message carrying the same bytes (a forward, a customer resending the photo).
    second = await receive_image(api, sim, gateway, number, "wamid.s3again")
    assert await fetcher.fetch_batch() == 1
    digest = hashlib.sha256(DATA).hexdigest()
    assert await objects(s3) == {f"{PREFIX}{org}/{digest}": len(DATA)}
    assert len(downloads[1]) == 1  # the second was known by its announced sha256
    for message_id in (first, second):
        row = await media_row(gateway, message_id)
        assert (row.state, row.storage_key, row.size_bytes) == (
            "stored",
            f"{org}/{digest}",
            len(DATA),
        )
        served = await api.get(
            f"/v1/whatsapp/media/{message_id}", headers=gtokens.headers(organization_id=org)
        )
        assert served.content == DATA

    # The same bytes sent to another organization are that organization's own object.
    elsewhere = await connect(api, gtokens, sim, gateway, other, "714")
    await receive_image(api, sim, gateway, elsewhere, "wamid.s3other")
    assert await fetcher.fetch_batch() == 1
    assert set(await objects(s3)) == {f"{PREFIX}{org}/{digest}", f"{PREFIX}{other}/{digest}"}


async def test_an_unreachable_bucket_is_retried_and_no_secret_is_logged(
    api, gtokens, sim, gateway, fetcher, s3, caplog
):
    org = uuid.uuid4()
    number = await connect(api, gtokens, sim, gateway, org, "715")
    message_id = await receive_image(api, sim, gateway, number, "wamid.s3nobucket")
    fetcher.storage.bucket = "no-such-bucket"
    with caplog.at_level(logging.DEBUG):
        assert await fetcher.fetch_batch() == 1
    row = await media_row(gateway, message_id)
    assert row.state == "pending" and row.attempts == 1
    assert "NoSuchBucket" in row.error
    assert SECRET not in caplog.text
    assert SECRET not in repr(gateway[0].state.settings)

    # A store that cannot be reached: the download route says so (503), not a 500.
    async with gateway[0].state.db.transaction(bypass_rls=True) as s:
        await s.execute(
            media_files.update().values(state="stored", storage_key=f"{org}/{'a' * 64}")
        )
    unreachable = S3MediaStorage(
        bucket=BUCKET,
        endpoint_url="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
    )
    kept, gateway[0].state.media_storage = gateway[0].state.media_storage, unreachable
    try:
        answer = await api.get(
            f"/v1/whatsapp/media/{message_id}", headers=gtokens.headers(organization_id=org)
        )
    finally:
        gateway[0].state.media_storage = kept
        await unreachable.aclose()
    assert answer.status_code == 503
    assert answer.json()["code"] == "unavailable"


async def chunks_of(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_large_media_goes_up_in_parts_and_a_mismatch_keeps_nothing(s3_url, s3):
    storage = S3MediaStorage(
        bucket=BUCKET,
        endpoint_url=s3_url,
        region="us-east-1",
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        addressing_style="path",
        part_size=5 * MIB,
    )
    org = uuid.uuid4()
    big = bytes(range(256)) * (12 * MIB // 256) + b"tail"
    digest = hashlib.sha256(big).hexdigest()
    try:
        stored = await storage.put(
            chunks_of(big), organization_id=org, expected_sha256=[digest], max_bytes=100 * MIB
        )
        assert (stored.key, stored.size_bytes) == (f"{org}/{digest}", len(big))
        head = await s3.head_object(Bucket=BUCKET, Key=stored.key)
        assert head["ETag"].strip('"').endswith("-3")  # three parts of at most 5 MiB
        assert b"".join([c async for c in storage.read(stored.key)]) == big

        tampered = big[:-1] + b"!"
        with pytest.raises(MediaRejected, match="sha256 mismatch"):
            await storage.put(
                chunks_of(tampered),
                organization_id=uuid.uuid4(),
                expected_sha256=[hashlib.sha256(big).hexdigest()],
                max_bytes=100 * MIB,
            )
        with pytest.raises(MediaRejected, match="larger than"):
            await storage.put(
                chunks_of(tampered),
                organization_id=uuid.uuid4(),
                expected_sha256=[hashlib.sha256(tampered).hexdigest()],
                max_bytes=6 * MIB,
            )
        assert await objects(s3) == {stored.key: len(big)}
        uploads = await s3.list_multipart_uploads(Bucket=BUCKET)
        assert uploads.get("Uploads", []) == []  # aborted, nothing left behind
    finally:
        await storage.aclose()
