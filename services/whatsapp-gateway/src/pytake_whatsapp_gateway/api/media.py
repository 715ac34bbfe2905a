"""``/v1/whatsapp/media/{message_id}``: the bytes of an inbound message's media."""

import uuid

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from pytake_common.errors import Conflict, DomainError, NotFound, ServiceUnavailable
from pytake_common.security import Reader
from pytake_whatsapp_gateway.api.deps import DB
from pytake_whatsapp_gateway.media import DOWNLOAD_PREFIX
from pytake_whatsapp_gateway.media.fetcher import PENDING, STORED
from pytake_whatsapp_gateway.media.storage import (
    MediaStorage,
    StorageUnavailable,
    key_belongs_to,
)
from pytake_whatsapp_gateway.tables import media_files

router = APIRouter(prefix=DOWNLOAD_PREFIX, tags=["whatsapp media"])


class MediaNotReady(Conflict):
    code, title = "media_not_ready", "Media not fetched yet"


class MediaUnavailable(DomainError):
    status, code, title = 410, "media_unavailable", "Media could not be fetched"


async def media_storage(request: Request) -> MediaStorage:
    storage: MediaStorage = request.app.state.media_storage
    return storage


@router.get(
    "/{message_id}",
    response_class=StreamingResponse,
    responses={
        200: {"description": "The media's bytes, with its mime type"},
        409: {"description": "Not fetched from WhatsApp yet (media_not_ready): retry shortly"},
        410: {"description": "WhatsApp's media could not be fetched or verified"},
        503: {"description": "The media store cannot be reached: retry shortly"},
    },
)
async def download(
    message_id: uuid.UUID,
    principal: Reader,
    db: DB,
    storage: MediaStorage = Depends(media_storage),
) -> StreamingResponse:
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        row = (
            await session.execute(
                select(
                    media_files.c.state,
                    media_files.c.storage_key,
                    media_files.c.mime_type,
                    media_files.c.size_bytes,
                    media_files.c.sha256,
                    media_files.c.error,
                ).where(
                    media_files.c.organization_id == org, media_files.c.message_id == message_id
                )
            )
        ).first()
    if row is None:
        raise NotFound("media not found")
    if row.state == PENDING:
        raise MediaNotReady("The media is being fetched from WhatsApp; retry shortly")
    key = row.storage_key
    # The row is the organization's (RLS + the filter above); its key must be too.
    if row.state != STORED or not key or not key_belongs_to(key, org):
        raise MediaUnavailable(row.error or "The media's file is not available")
    try:
        kept = await storage.exists(key)
    except StorageUnavailable:
        raise ServiceUnavailable("The media store cannot be reached; retry shortly") from None
    if not kept:
        raise MediaUnavailable("The media's file is not available")
    headers = {
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": "attachment",
        "ETag": f'"{row.sha256 or key.rsplit("/", 1)[-1]}"',
    }
    if row.size_bytes is not None:
        headers["Content-Length"] = str(row.size_bytes)
    return StreamingResponse(
        storage.read(key),
        media_type=row.mime_type or "application/octet-stream",
        headers=headers,
    )
