"""Where fetched media are kept: a small protocol and its local-directory implementation.

Storage is content-addressed: a file's key is the hex sha256 of its bytes, so
``put`` verifies the digest while writing and keeps nothing that does not match.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

READ_CHUNK = 256 * 1024
_KEY = re.compile(r"^[0-9a-f]{64}$")


class MediaRejected(Exception):
    """The bytes were not kept (digest mismatch, too large); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class StoredMedia:
    key: str
    size_bytes: int


def digest_matches(announced: str, digest: bytes) -> bool:
    """Meta announces sha256 as hex (media endpoint) or base64 (some webhooks)."""
    announced = announced.strip()
    return announced.lower() == digest.hex() or announced in (
        base64.b64encode(digest).decode(),
        base64.urlsafe_b64encode(digest).decode(),
    )


class MediaStorage(Protocol):
    async def put(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: list[str], max_bytes: int
    ) -> StoredMedia:
        """Keep the bytes if their sha256 matches every announced digest; else raise
        :class:`MediaRejected` and keep nothing."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """The bytes of a stored file, in chunks."""
        ...

    async def exists(self, key: str) -> bool: ...


class LocalMediaStorage:
    """Files named by their sha256 in one directory, written atomically (temp + rename)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, key: str) -> Path:
        if not _KEY.match(key):
            raise ValueError("not a media key")
        return self.directory / key

    async def put(
        self, chunks: AsyncIterable[bytes], *, expected_sha256: list[str], max_bytes: int
    ) -> StoredMedia:
        await asyncio.to_thread(self.directory.mkdir, parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=self.directory, prefix=".incoming-")
        temp = Path(temp_name)
        kept = False
        try:
            digest = hashlib.sha256()
            size = 0
            with os.fdopen(fd, "wb") as file:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > max_bytes:
                        raise MediaRejected(f"media larger than {max_bytes} bytes")
                    digest.update(chunk)
                    await asyncio.to_thread(file.write, chunk)
                await asyncio.to_thread(file.flush)
                await asyncio.to_thread(os.fsync, file.fileno())
            raw = digest.digest()
            for announced in expected_sha256:
                if not digest_matches(announced, raw):
                    raise MediaRejected(
                        f"sha256 mismatch: WhatsApp announced {announced[:100]}, "
                        f"the downloaded bytes hash to {raw.hex()}"
                    )
            key = raw.hex()
            await asyncio.to_thread(os.replace, temp, self.path(key))
            kept = True
            return StoredMedia(key=key, size_bytes=size)
        finally:
            if not kept:
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
