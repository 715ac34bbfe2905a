"""The media worker: fetch each pending inbound media from Meta once, verified.

A row is claimed under ``FOR UPDATE SKIP LOCKED`` and leased (its
``next_attempt_at`` pushed past the lease) in a short transaction, so replicas
share the work and a download never holds a database transaction open. Then:
``GET /{version}/{media_id}`` with the number's token gives the URL, mime type
and sha256; the URL is downloaded with the same bearer token and stored through
:class:`MediaStorage` only if its sha256 matches. Transient failures (network,
5xx, Meta's transient codes) are retried with backoff up to
``media_max_attempts``; the others fail the row at once with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from pytake_common.aio import sleep_or_stop
from pytake_common.crypto import SecretBox, SecretDecryptionError
from pytake_common.db import Database
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.media.storage import MediaRejected, MediaStorage, StorageUnavailable
from pytake_whatsapp_gateway.sending.graph import GraphClient
from pytake_whatsapp_gateway.tables import media_files, numbers

log = logging.getLogger(__name__)

PENDING, STORED, FAILED = "pending", "stored", "failed"
#: A claimed row returns to the queue if its worker vanished this long ago.
LEASE = timedelta(minutes=10)
RETRY_BASE_S = 5.0
RETRY_MAX_S = 600.0
BATCH = 4
DOWNLOAD_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Claimed:
    message_id: uuid.UUID
    organization_id: uuid.UUID
    number_id: uuid.UUID
    media_id: str
    sha256: str | None
    attempts: int


class Retry(Exception):
    """A transient failure: try again later."""


class Failed(Exception):
    """A terminal failure: the media will not be fetched."""


class MediaFetcher:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        box: SecretBox,
        client: httpx.AsyncClient,
        storage: MediaStorage,
    ) -> None:
        self.settings = settings
        self.db = db
        self.box = box
        self.client = client
        self.graph = GraphClient(client, settings.graph_api_base, settings.graph_api_version)
        self.storage = storage

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                done = await self.fetch_batch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("media worker error, retrying", extra={"error": repr(exc)})
                done = 0
            if done == 0:
                await sleep_or_stop(stop, self.settings.media_poll_interval_s)

    async def claim(self, limit: int = BATCH) -> list[Claimed]:
        async with self.db.transaction(bypass_rls=True) as session:
            due = (
                select(media_files.c.message_id)
                .where(media_files.c.state == PENDING, media_files.c.next_attempt_at <= func.now())
                .order_by(media_files.c.next_attempt_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
            rows = (
                await session.execute(
                    update(media_files)
                    .where(media_files.c.message_id.in_(due))
                    .values(
                        next_attempt_at=func.now() + LEASE,
                        attempts=media_files.c.attempts + 1,
                        updated_at=func.now(),
                    )
                    .returning(
                        media_files.c.message_id,
                        media_files.c.organization_id,
                        media_files.c.number_id,
                        media_files.c.media_id,
                        media_files.c.sha256,
                        media_files.c.attempts,
                    )
                )
            ).all()
        return [Claimed(**r._mapping) for r in rows]

    async def fetch_batch(self, limit: int = BATCH) -> int:
        """Fetch up to ``limit`` due media; return how many were handled."""
        claimed = await self.claim(limit)
        await asyncio.gather(*(self.fetch(c) for c in claimed))
        return len(claimed)

    async def fetch(self, item: Claimed) -> None:
        try:
            values = await self._download(item)
        except Retry as exc:
            if item.attempts >= self.settings.media_max_attempts:
                await self._finish(item, state=FAILED, error=f"{exc} (gave up after retries)")
            else:
                delay = min(RETRY_BASE_S * 2 ** (item.attempts - 1), RETRY_MAX_S)
                await self._finish(item, state=PENDING, error=str(exc), retry_in_s=delay)
            return
        except (Failed, MediaRejected) as exc:
            await self._finish(item, state=FAILED, error=str(exc))
            return
        await self._finish(item, state=STORED, error=None, **values)

    async def _finish(
        self,
        item: Claimed,
        *,
        state: str,
        error: str | None,
        retry_in_s: float = 0.0,
        **values: Any,
    ) -> None:
        if error is not None:
            log.warning(
                "inbound media not fetched",
                extra={"message_id": str(item.message_id), "state": state, "error": error},
            )
        async with self.db.transaction(organization_id=item.organization_id) as session:
            await session.execute(
                update(media_files)
                .where(
                    media_files.c.organization_id == item.organization_id,
                    media_files.c.message_id == item.message_id,
                    media_files.c.state == PENDING,
                )
                .values(
                    state=state,
                    error=error[:2000] if error else None,
                    next_attempt_at=func.now() + timedelta(seconds=retry_in_s),
                    updated_at=func.now(),
                    **values,
                )
            )

    async def _token(self, item: Claimed) -> str:
        async with self.db.transaction(organization_id=item.organization_id) as session:
            enc = await session.scalar(
                select(numbers.c.access_token_enc).where(
                    numbers.c.organization_id == item.organization_id,
                    numbers.c.id == item.number_id,
                )
            )
        if enc is None:
            raise Failed("the number of the message is no longer connected")
        try:
            return self.box.decrypt(enc)
        except SecretDecryptionError:
            raise Failed("the number's stored credentials cannot be read") from None

    async def _download(self, item: Claimed) -> dict[str, Any]:
        token = await self._token(item)
        answer = await self.graph.call("GET", self.graph.url(item.media_id), token)
        if answer.error is not None:
            reason = f"media lookup failed: {answer.error.detail}"
            raise Retry(reason) if answer.error.transient else Failed(reason)
        url, sha256 = answer.body.get("url"), answer.body.get("sha256")
        mime_type, file_size = answer.body.get("mime_type"), answer.body.get("file_size")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise Failed("WhatsApp's media answer has no download URL")
        max_bytes = self.settings.media_max_bytes
        if isinstance(file_size, int) and file_size > max_bytes:
            raise Failed(f"media of {file_size} bytes is larger than {max_bytes} bytes")
        expected = [s for s in (sha256, item.sha256) if isinstance(s, str) and s]
        if not expected:
            raise Failed("WhatsApp announced no sha256 for the media; not kept unverified")
        try:
            # The download starts only when the storage reads the first chunk: media
            # already kept under the announced digest is not downloaded again.
            async with contextlib.aclosing(self._chunks(url, token)) as chunks:
                stored = await self.storage.put(
                    chunks,
                    organization_id=item.organization_id,
                    expected_sha256=expected,
                    max_bytes=max_bytes,
                )
        except httpx.HTTPError as exc:
            raise Retry(f"media download failed: {type(exc).__name__}") from exc
        except StorageUnavailable as exc:
            raise Retry(str(exc)) from exc
        values: dict[str, Any] = {"storage_key": stored.key, "size_bytes": stored.size_bytes}
        if isinstance(mime_type, str) and mime_type:
            values["mime_type"] = mime_type[:200]
        values["sha256"] = stored.sha256
        return values

    async def _chunks(self, url: str, token: str) -> AsyncGenerator[bytes, None]:
        async with self.client.stream(
            "GET", url, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            if response.status_code >= 500 or response.status_code == 429:
                raise Retry(f"media download answered HTTP {response.status_code}")
            if not response.is_success:
                raise Failed(f"media download answered HTTP {response.status_code}")
            async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK):
                yield chunk
