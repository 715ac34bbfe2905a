"""Where fetched media are kept: a small protocol, a local directory and an S3 bucket.

Storage is content-addressed per organization: a file's key is
``<organization id>/<hex sha256 of its bytes>``. Meta announces the sha256
before the download, so the key is known up front: a file already kept under it
is not fetched again (the same media arriving twice is stored once), and
``put`` verifies the digest while writing and keeps nothing that does not match.
Tenant isolation is the key prefix plus the ownership check of the database row
that names the key (``media_files``, under row-level security).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import os
import re
import tempfile
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
#: S3's smallest multipart part (except the last one).
MIN_PART_BYTES = 5 * 1024 * 1024
_SHA = r"[0-9a-f]{64}"
_KEY = re.compile(
    rf"^(?:(?P<org>[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}})/)?(?P<sha>{_SHA})$"
)


class MediaRejected(Exception):
    """The bytes were not kept (digest mismatch, too large); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StorageUnavailable(Exception):
    """The store could not be reached or refused the operation: try again later."""


@dataclass(frozen=True, slots=True)
class StoredMedia:
    key: str
    sha256: str
    size_bytes: int


def digest_matches(announced: str, digest: bytes) -> bool:
    """Meta announces sha256 as hex (media endpoint) or base64 (some webhooks)."""
    return _decode_digest(announced) == digest


def _decode_digest(announced: str) -> bytes | None:
    announced = announced.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", announced):
        return bytes.fromhex(announced)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        with contextlib.suppress(binascii.Error, ValueError):
            raw = decode(announced + "=" * (-len(announced) % 4))
            if len(raw) == 32:
                return raw
    return None


def announced_digest(expected_sha256: list[str]) -> bytes:
    """The one digest Meta announced (hex or base64, possibly several times)."""
    if not expected_sha256:
        raise MediaRejected("WhatsApp announced no sha256 for the media; not kept unverified")
    digests = {_decode_digest(s) for s in expected_sha256}
    if None in digests:
        bad = next(s for s in expected_sha256 if _decode_digest(s) is None)
        raise MediaRejected(f"sha256 mismatch: WhatsApp announced {bad[:100]!r}, not a sha256")
    if len(digests) > 1:
        shown = ", ".join(sorted(s[:100] for s in expected_sha256))
        raise MediaRejected(f"sha256 mismatch: WhatsApp announced different digests ({shown})")
    digest = digests.pop()
    assert digest is not None
    return digest


def media_key(organization_id: uuid.UUID, sha256_hex: str) -> str:
    return f"{organization_id}/{sha256_hex}"


def key_belongs_to(key: str, organization_id: uuid.UUID) -> bool:
    """Whether ``key`` is one of the organization's (keys without a prefix predate it)."""
    match = _KEY.match(key)
    return match is not None and match["org"] in (None, str(organization_id))


def _check_key(key: str) -> str:
    if not _KEY.match(key):
        raise ValueError("not a media key")
    return key


def _mismatch(digest: bytes, got: bytes) -> MediaRejected:
    return MediaRejected(
        f"sha256 mismatch: WhatsApp announced {digest.hex()}, "
        f"the downloaded bytes hash to {got.hex()}"
    )


class MediaStorage(Protocol):
    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        organization_id: uuid.UUID,
        expected_sha256: list[str],
        max_bytes: int,
    ) -> StoredMedia:
        """Keep the bytes if their sha256 matches every announced digest; else raise
        :class:`MediaRejected` and keep nothing. Bytes already kept under the
        announced digest are not read again. :class:`StorageUnavailable`: retry later."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The bytes of a stored file, in chunks."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is kept (:class:`StorageUnavailable` if the store cannot say)."""
        ...

    async def aclose(self) -> None: ...


class LocalMediaStorage:
    """Files named ``<organization>/<sha256>`` under one directory, written atomically
    (temp + fsync + rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        return self.directory / _check_key(key)

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        organization_id: uuid.UUID,
        expected_sha256: list[str],
        max_bytes: int,
    ) -> StoredMedia:
        digest = announced_digest(expected_sha256)
        key = media_key(organization_id, digest.hex())
        target = self.path(key)
        with contextlib.suppress(FileNotFoundError):
            kept = await asyncio.to_thread(target.stat)
            return StoredMedia(key=key, sha256=digest.hex(), size_bytes=kept.st_size)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        temp = Path(temp_name)
        moved = False
        try:
            hasher = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as file:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaRejected(f"media larger than {max_bytes} bytes")
                    hasher.update(chunk)
                    await asyncio.to_thread(file.write, chunk)
                await asyncio.to_thread(file.flush)
                await asyncio.to_thread(os.fsync, file.fileno())
            if hasher.digest() != digest:
                raise _mismatch(digest, hasher.digest())
            await asyncio.to_thread(os.replace, temp, target)
            moved = True
            return StoredMedia(key=key, sha256=digest.hex(), size_bytes=size)
        finally:
            if not moved:
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(temp.unlink)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        file = await asyncio.to_thread(self.path(key).open, "rb")
        try:
            while chunk := await asyncio.to_thread(file.read, READ_CHUNK):
                yield chunk
        finally:
            await asyncio.to_thread(file.close)

    async def exists(self, key: str) -> bool:
        return await asyncio.to_thread(self.path(key).is_file)

    async def aclose(self) -> None:
        return None


class S3MediaStorage:
    """Objects ``<prefix><organization>/<sha256>`` in an S3-compatible bucket (AWS S3,
    MinIO, Cloudflare R2, ...).

    Memory stays bounded whatever the media's size: the download is hashed while
    it streams into a multipart upload of ``part_size`` parts, and the upload is
    completed only if the digest matches (else aborted, so nothing becomes
    visible); media smaller than one part go up in one ``PutObject`` after the
    check. Credentials come from the settings when given, else from the standard
    AWS chain (environment, shared files, web identity, instance role).
    """

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        addressing_style: str = "auto",
        part_size: int = 8 * 1024 * 1024,
    ) -> None:
        if part_size < MIN_PART_BYTES:
            raise ValueError(f"S3 parts are at least {MIN_PART_BYTES} bytes")
        self.bucket = bucket
        self.prefix = prefix
        self.part_size = part_size
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "config": AioConfig(
                s3={"addressing_style": addressing_style},
                retries={"mode": "standard", "max_attempts": 3},
                # Checksums only where S3 requires them: several S3-compatible stores
                # reject the CRC trailers newer botocore versions add by default.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                connect_timeout=10,
                read_timeout=60,
            ),
        }
        self._stack: contextlib.AsyncExitStack | None = None
        self._client: S3Client | None = None
        self._lock = asyncio.Lock()

    def object_name(self, key: str) -> str:
        return self.prefix + _check_key(key)

    async def client(self) -> S3Client:
        async with self._lock:
            if self._client is None:
                stack = contextlib.AsyncExitStack()
                self._client = await stack.enter_async_context(
                    get_session().create_client("s3", **self._client_args)
                )
                self._stack = stack
            return self._client

    async def aclose(self) -> None:
        async with self._lock:
            if self._stack is not None:
                await self._stack.aclose()
            self._stack, self._client = None, None

    async def _size(self, client: S3Client, name: str) -> int | None:
        try:
            head = await client.head_object(Bucket=self.bucket, Key=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return int(head["ContentLength"])

    async def put(
        self,
        chunks: AsyncIterable[bytes],
        *,
        organization_id: uuid.UUID,
        expected_sha256: list[str],
        max_bytes: int,
    ) -> StoredMedia:
        digest = announced_digest(expected_sha256)
        key = media_key(organization_id, digest.hex())
        name = self.object_name(key)
        try:
            client = await self.client()
            kept = await self._size(client, name)
            if kept is not None:
                return StoredMedia(key=key, sha256=digest.hex(), size_bytes=kept)
            size = await self._upload(client, name, chunks, digest, max_bytes)
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"media store: {_describe(exc)}") from exc
        return StoredMedia(key=key, sha256=digest.hex(), size_bytes=size)

    async def _upload(
        self,
        client: S3Client,
        name: str,
        chunks: AsyncIterable[bytes],
        digest: bytes,
        max_bytes: int,
    ) -> int:
        hasher = hashlib.sha256()
        size = 0
        pending = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        completed = False

        async def send_part(body: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:
                created = await client.create_multipart_upload(Bucket=self.bucket, Key=name)
                upload_id = created["UploadId"]
            number = len(parts) + 1
            answer = await client.upload_part(
                Bucket=self.bucket, Key=name, UploadId=upload_id, PartNumber=number, Body=body
            )
            parts.append({"ETag": answer["ETag"], "PartNumber": number})

        try:
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise MediaRejected(f"media larger than {max_bytes} bytes")
                hasher.update(chunk)
                pending += chunk
                if len(pending) >= self.part_size:
                    part = bytes(pending[: self.part_size])
                    del pending[: self.part_size]
                    await send_part(part)
            if hasher.digest() != digest:
                raise _mismatch(digest, hasher.digest())
            if upload_id is None:
                await client.put_object(Bucket=self.bucket, Key=name, Body=bytes(pending))
            else:
                if pending:
                    await send_part(bytes(pending))
                await client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=name,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
            completed = True
            return size
        finally:
            if upload_id is not None and not completed:
                try:
                    await client.abort_multipart_upload(
                        Bucket=self.bucket, Key=name, UploadId=upload_id
                    )
                except (BotoCoreError, ClientError) as exc:  # a bucket lifecycle rule cleans up
                    log.warning("multipart upload not aborted", extra={"error": _describe(exc)})

    async def read(self, key: str) -> AsyncIterator[bytes]:
        client = await self.client()
        answer = await client.get_object(Bucket=self.bucket, Key=self.object_name(key))
        async with answer["Body"] as body:
            while chunk := await body.read(READ_CHUNK):
                yield chunk

    async def exists(self, key: str) -> bool:
        try:
            return await self._size(await self.client(), self.object_name(key)) is not None
        except (BotoCoreError, ClientError) as exc:
            raise StorageUnavailable(f"media store: {_describe(exc)}") from exc


def _describe(exc: Exception) -> str:
    """What went wrong, without request details (no credentials are in botocore's errors)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}"[:300]
    return type(exc).__name__
