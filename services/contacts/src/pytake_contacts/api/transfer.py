"""CSV import (streamed, idempotent by phone) and CSV export of a filtered list."""

import asyncio
import csv
import io
import tempfile
from collections.abc import AsyncIterator
from itertools import islice
from typing import IO, Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import UploadFile

from pytake_common.errors import DomainError, InvalidInput
from pytake_common.pgtenant import allow_long_reads
from pytake_common.security import Worker
from pytake_contacts import csv_cells
from pytake_contacts.api.deps import DB, Filter, directory_of
from pytake_contacts.importer import BATCH, EXPORT_FIELDS, Importer, parse_header
from pytake_contacts.schemas import ImportResult
from pytake_contacts.search import next_cursor, page_rows
from pytake_contacts.store import attribute_schema

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])

SPOOL_IN_MEMORY = 1 << 20
EXPORT_PAGE = 1000


class PayloadTooLarge(DomainError):
    status, code, title = 413, "payload_too_large", "Import file too large"


class UnsupportedMediaType(DomainError):
    status, code, title = 415, "unsupported_media_type", "Send text/csv or multipart/form-data"


async def _spool(request: Request, limit: int) -> IO[bytes]:
    """The request body in a temporary file (memory up to 1 MiB, then disk)."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            spool.close()
            raise PayloadTooLarge(f"imports are limited to {limit} bytes")
        spool.write(chunk)
    spool.seek(0)
    return spool


async def _upload(request: Request, limit: int) -> IO[bytes]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in ("text/csv", "application/csv", "application/octet-stream"):
        return await _spool(request, limit)
    if content_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInput("send the CSV as the form field 'file'")
        if upload.size is not None and upload.size > limit:
            raise PayloadTooLarge(f"imports are limited to {limit} bytes")
        upload.file.seek(0)
        return upload.file
    raise UnsupportedMediaType()


@router.post("/import", response_model=ImportResult)
async def import_contacts(request: Request, principal: Worker, db: DB) -> ImportResult:
    """Create or update contacts from CSV (header row; ``phone`` required, matched on it).

    Columns: ``phone``, ``name``, ``email``, ``company``, ``job_title``, ``notes``,
    ``language`` and ``attributes.<key>`` for custom attributes (defined in this
    organization); an empty cell leaves the field as it is. A file exported by
    ``GET /v1/contacts/export`` imports as is: its other columns (``id``, ``wa_id``,
    ``marketing_opt_in``, ``blocked``, ``assignee_id``, ``created_at``,
    ``last_interaction_at``, ``tags``) are ignored. Each row is applied fully or not
    at all; failures are reported by row number (1 = the first row after the header).
    Importing the same file twice changes nothing the second time.
    """
    limit: int = request.app.state.settings.import_max_bytes
    raw = await _upload(request, limit)
    stream = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="strict", newline="")
    try:
        reader = csv.reader(stream)
        try:
            header = await asyncio.to_thread(next, reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            raise InvalidInput(f"the file is not UTF-8 CSV: {exc}") from exc
        org = principal.organization_id
        async with db.transaction(organization_id=org) as session:
            schema = await attribute_schema(session, org)
        columns = parse_header(header or [], schema)
        importer = Importer(db, directory_of(request), principal, columns, schema)
        row_number = 0
        while True:
            try:
                chunk = await asyncio.to_thread(lambda: list(islice(reader, BATCH)))
            except (UnicodeDecodeError, csv.Error) as exc:
                importer.fail_rest(row_number + 1, f"unreadable CSV: {exc}")
                break
            if not chunk:
                break
            await importer.feed([(row_number + i + 1, cells) for i, cells in enumerate(chunk)])
            row_number += len(chunk)
        await importer.flush()
    finally:
        stream.close()
    return importer.result()


@router.get("/export")
async def export_contacts(principal: Worker, db: DB, filters: Filter) -> StreamingResponse:
    """The filtered list as CSV (same filters as the list), streamed page by page.

    Every field is quoted, and a cell that a spreadsheet could read as a formula
    (``=``, ``+``, ``-``, ``@``, tab or carriage return first, also after blanks or
    quotes) starts with a single quote: phones read ``'+5511987654321``. The file
    imports back as is (into this organization or another with the same attributes):
    the import drops those quotes again and ignores the export-only columns (ids,
    ``wa_id``, ``marketing_opt_in``, ``blocked``, ``assignee_id``, timestamps, ``tags``).
    """
    allow_long_reads()  # a large book's pages may each take longer than an API read
    org = principal.organization_id
    async with db.transaction(organization_id=org) as session:
        keys = sorted(await attribute_schema(session, org))

    def line(values: list[Any]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, quoting=csv_cells.QUOTING).writerow(csv_cells.row(values))
        return buffer.getvalue()

    async def body() -> AsyncIterator[str]:
        yield line([*EXPORT_FIELDS, "tags", *(f"attributes.{k}" for k in keys)])
        cursor: str | None = None
        while True:
            async with db.transaction(organization_id=org) as session:
                rows, tags = await page_rows(session, org, filters, EXPORT_PAGE, cursor)
            out = io.StringIO()
            writer = csv.writer(out, quoting=csv_cells.QUOTING)
            for r in rows:
                values = [r[f] for f in EXPORT_FIELDS if f != "blocked"]
                values.insert(EXPORT_FIELDS.index("blocked"), r["blocked_at"] is not None)
                names = ";".join(t["name"] for t in tags[r["id"]])
                attrs = [r["attributes"].get(k) for k in keys]
                # Every cell, whatever its column, is neutralised (csv_cells).
                writer.writerow(csv_cells.row([*values, names, *attrs]))
            yield out.getvalue()
            if len(rows) < EXPORT_PAGE:
                return
            cursor = next_cursor(filters, rows[-1])

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="contacts.csv"'},
    )
