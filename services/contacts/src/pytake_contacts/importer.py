"""CSV import: validate each row, then upsert rows in batches keyed by phone.

Every row is validated in Python first (a bad row is reported and skipped); valid rows
are applied a batch per transaction with set-based statements (one SELECT … FOR UPDATE,
one multi-row INSERT, one executemany UPDATE, one multi-row outbox INSERT), which is
what makes 100,000 rows take seconds rather than minutes. Should a batch fail in the
database anyway (a message from the same customer created the contact meanwhile), it is
replayed row by row, each row in its own transaction, so a row is applied fully or not
at all and only the offending row is reported. A batch PostgreSQL aborts only to break a
deadlock (two imports, or an import and inbound messages, adding the same new search
words in another order) is run again whole: nothing of it was applied.
"""

import asyncio
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, func, insert, or_, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.db import Database
from pytake_common.errors import DomainError, InvalidInput
from pytake_common.events import CloudEvent, EventData
from pytake_common.ids import contact_id_for
from pytake_common.mechanics import outbox
from pytake_common.outbox import CHANNEL
from pytake_common.security import Principal
from pytake_common.tracing import inject_headers
from pytake_contacts.book import RESTORED, contact_limit
from pytake_contacts.csv_cells import restore
from pytake_contacts.domain import (
    AGENT,
    MAX_COMPANY,
    MAX_JOB_TITLE,
    MAX_NAME,
    MAX_NOTES,
    PROFILE,
    AttributeDefinition,
    UnknownAttribute,
    clean_email,
    clean_language,
    clean_name,
    merge_attributes,
    normalize_phone,
    parse_attribute_text,
    wa_id_for_phone,
)
from pytake_contacts.events import ContactCreated, ContactUpdated
from pytake_contacts.schemas import ImportFailure, ImportResult
from pytake_contacts.store import set_values
from pytake_contacts.tables import contacts

BATCH = 1000
FIELDS = ("name", "email", "company", "job_title", "notes", "language")
PROFILE_COLUMNS = ("name", "phone", *FIELDS[1:])
MAX_LENGTH = {"name": MAX_NAME, "company": MAX_COMPANY, "job_title": MAX_JOB_TITLE}
ATTRIBUTE_PREFIX = "attributes."
#: The columns of an export (``GET /v1/contacts/export``), in order; then ``tags`` and
#: ``attributes.<key>``.
EXPORT_FIELDS = (
    "id",
    "name",
    "phone",
    "email",
    "company",
    "job_title",
    "language",
    "notes",
    "wa_id",
    "marketing_opt_in",
    "blocked",
    "assignee_id",
    "created_at",
    "last_interaction_at",
)
#: Columns an export has and an import ignores, so an exported file imports as is
#: (into the same organization or another): ids, timestamps and the assignee belong
#: to the exporting organization; ``wa_id`` follows from the phone; marketing consent
#: and blocking are not carried over by a file (consent is given to one business, and
#: both have their own routes); tags have theirs too.
EXPORT_ONLY = frozenset(EXPORT_FIELDS) - {"phone", *FIELDS} | {"tags"}


@dataclass(frozen=True, slots=True)
class Columns:
    phone: int
    fields: dict[str, int]
    attributes: dict[str, int]
    width: int


def parse_header(header: list[str], schema: dict[str, AttributeDefinition]) -> Columns:
    """Where each known column is; an unknown column refuses the whole file up front
    (an export's own columns, :data:`EXPORT_ONLY`, are ignored)."""
    names = [h.strip().lower() for h in header]
    if "phone" not in names:
        raise InvalidInput("the first row must be a header with a 'phone' column")
    if len(set(names)) != len(names):
        raise InvalidInput("a column appears twice in the header")
    fields: dict[str, int] = {}
    attributes: dict[str, int] = {}
    for i, name in enumerate(names):
        if name == "phone" or name in EXPORT_ONLY:
            continue
        if name in FIELDS:
            fields[name] = i
        elif name.startswith(ATTRIBUTE_PREFIX) and name[len(ATTRIBUTE_PREFIX) :] in schema:
            attributes[name[len(ATTRIBUTE_PREFIX) :]] = i
        elif name.startswith(ATTRIBUTE_PREFIX):
            key = name[len(ATTRIBUTE_PREFIX) :]
            raise UnknownAttribute(f"attribute {key!r} is not defined for this organization")
        else:
            raise InvalidInput(
                f"unknown column {name!r}; expected phone, {', '.join(FIELDS)} or attributes.<key>",
                column=name,
            )
    return Columns(names.index("phone"), fields, attributes, len(names))


@dataclass(slots=True)
class Parsed:
    row: int
    phone: str
    wa_id: str
    values: dict[str, Any]
    attributes: dict[str, Any]


@dataclass(slots=True)
class Outcome:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    failed: list[ImportFailure] = field(default_factory=list)


#: PostgreSQL's "run it again" answers: deadlock_detected, serialization_failure.
RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
#: tries of one batch before the import gives up with the database's error
BATCH_ATTEMPTS = 4


def _failure(row: int, exc: DomainError) -> ImportFailure:
    return ImportFailure(row=row, error=f"{exc.code}: {exc.detail}")


class Importer:
    def __init__(
        self,
        db: Database,
        directory: Any,
        principal: Principal,
        columns: Columns,
        schema: dict[str, AttributeDefinition],
    ) -> None:
        self.db = db
        self.directory = directory  # the organization directory (plan limits), or None
        self.org = principal.organization_id
        self.columns = columns
        self.schema = schema
        self.pending: dict[str, Parsed] = {}
        self.total = Outcome()

    def result(self) -> ImportResult:
        failed = sorted(self.total.failed, key=lambda f: f.row)
        return ImportResult(
            created=self.total.created,
            updated=self.total.updated,
            unchanged=self.total.unchanged,
            failed=failed,
        )

    def fail_rest(self, row: int, error: str) -> None:
        self.total.failed.append(ImportFailure(row=row, error=error))

    def parse(self, row: int, cells: list[str]) -> Parsed | None:
        if not any(c.strip() for c in cells):
            return None  # blank line
        if len(cells) != self.columns.width:
            raise InvalidInput(f"expected {self.columns.width} columns, found {len(cells)}")
        cells = [restore(c) for c in cells]  # our own export's quote prefixes
        phone = normalize_phone(cells[self.columns.phone])
        values: dict[str, Any] = {}
        for name, index in self.columns.fields.items():
            raw = cells[index].strip()
            if not raw:
                continue
            limit = MAX_LENGTH.get(name, MAX_NOTES)
            if len(raw) > limit:
                raise InvalidInput(f"{name} is longer than {limit} characters")
            if name == "name":
                values[name] = clean_name(raw)
            elif name == "email":
                values[name] = clean_email(raw)
            elif name == "language":
                values[name] = clean_language(raw)
            else:
                values[name] = raw
        typed = {}
        for key, index in self.columns.attributes.items():
            value = parse_attribute_text(self.schema[key], cells[index])
            if value is not None:
                typed[key] = value
        attributes = merge_attributes(self.schema, {}, typed)
        return Parsed(row, phone, wa_id_for_phone(phone), values, attributes)

    async def feed(self, rows: list[tuple[int, list[str]]]) -> None:
        for number, cells in rows:
            try:
                parsed = self.parse(number, cells)
            except DomainError as exc:
                self.total.failed.append(_failure(number, exc))
                continue
            if parsed is None:
                continue
            if parsed.wa_id in self.pending:  # the same phone twice: apply in file order
                await self.flush()
            self.pending[parsed.wa_id] = parsed
            if len(self.pending) >= BATCH:
                await self.flush()

    async def flush(self) -> None:
        batch, self.pending = list(self.pending.values()), {}
        if not batch:
            return
        try:
            outcomes = [await self._apply_again_if_aborted(batch)]
        except IntegrityError:
            outcomes = []
            for parsed in batch:
                try:
                    outcomes.append(await self._apply_again_if_aborted([parsed]))
                except IntegrityError as exc:
                    error = f"conflict: {exc.orig}"[:300]
                    outcomes.append(Outcome(failed=[ImportFailure(row=parsed.row, error=error)]))
        for outcome in outcomes:
            self.total.created += outcome.created
            self.total.updated += outcome.updated
            self.total.unchanged += outcome.unchanged
            self.total.failed += outcome.failed

    async def _apply_again_if_aborted(self, batch: list[Parsed]) -> Outcome:
        """:meth:`_apply`, run again (after a short random pause) when PostgreSQL rolled
        the transaction back to break a deadlock or a serialization conflict."""
        attempt = 1
        while True:
            try:
                return await self._apply(batch)
            except DBAPIError as exc:
                sqlstate = getattr(exc.orig, "sqlstate", None)
                if sqlstate not in RETRYABLE_SQLSTATES or attempt >= BATCH_ATTEMPTS:
                    raise
            await asyncio.sleep(random.uniform(0.01, 0.05) * attempt)
            attempt += 1

    async def _apply(self, batch: list[Parsed]) -> Outcome:
        org = self.org
        outcome = Outcome()
        async with self.db.transaction(organization_id=org) as session:
            ids = {p.wa_id: contact_id_for(org, p.wa_id) for p in batch}
            existing = (
                (
                    await session.execute(
                        select(contacts)
                        .where(
                            contacts.c.organization_id == org,
                            or_(
                                contacts.c.wa_id.in_(list(ids)),
                                contacts.c.id.in_(list(ids.values())),
                            ),
                        )
                        .with_for_update()
                    )
                )
                .mappings()
                .all()
            )
            by_wa = {r["wa_id"]: r for r in existing}
            by_id = {r["id"]: r for r in existing}
            adding: list[tuple[Parsed, Any]] = []
            changing: list[tuple[Parsed, Any]] = []
            for p in batch:
                row = by_wa.get(p.wa_id) or by_id.get(ids[p.wa_id])
                if row is None or row["deleted_at"] is not None:
                    adding.append((p, row))
                else:
                    changing.append((p, row))
            free = await contact_limit(session, self.directory, org)
            if free is not None and len(adding) > max(free, 0):
                for p, _ in adding[max(free, 0) :]:
                    outcome.failed.append(
                        ImportFailure(
                            row=p.row,
                            error="plan_limit_exceeded: the plan's contact limit is reached",
                        )
                    )
                adding = adding[: max(free, 0)]
            events = await self._create(session, adding, ids)
            outcome.created = len(adding)
            updated_events = await self._update(session, changing, outcome)
            await _stage(session, org, events + updated_events)
        return outcome

    async def _create(
        self,
        session: AsyncSession,
        adding: list[tuple[Parsed, Any]],
        ids: dict[str, uuid.UUID],
    ) -> list[tuple[uuid.UUID, EventData]]:
        org = self.org
        fresh: list[dict[str, Any]] = []
        events: list[tuple[uuid.UUID, EventData]] = []
        for p, row in adding:
            values = {f: p.values.get(f) for f in FIELDS} | {
                "phone": p.phone,
                "wa_id": p.wa_id,
                "attributes": p.attributes,
                "name_source": AGENT if p.values.get("name") else PROFILE,
            }
            if row is None:
                contact_id = ids[p.wa_id]
                fresh.append(values | {"id": contact_id, "organization_id": org})
            else:  # soft-deleted or erased before: it comes back with this row's data
                contact_id = row["id"]
                await set_values(session, org, contact_id, **(values | RESTORED))
            events.append(
                (
                    contact_id,
                    ContactCreated(
                        contact_id=contact_id,
                        organization_id=org,
                        wa_id=p.wa_id,
                        user_id=None if row is None else row["user_id"],
                        name=values["name"],
                        phone=p.phone,
                        attributes=values["attributes"],
                    ),
                )
            )
        if fresh:
            await session.execute(insert(contacts), fresh)
        return events

    async def _update(
        self, session: AsyncSession, changing: list[tuple[Parsed, Any]], outcome: Outcome
    ) -> list[tuple[uuid.UUID, EventData]]:
        params: list[dict[str, Any]] = []
        events: list[tuple[uuid.UUID, EventData]] = []
        for p, row in changing:
            wanted = p.values | {"phone": p.phone}
            final = {c: wanted.get(c, row[c]) for c in PROFILE_COLUMNS}
            final["attributes"] = row["attributes"] | p.attributes
            final["name_source"] = AGENT if "name" in p.values else row["name_source"]
            changed = sorted(k for k, v in final.items() if row[k] != v and k != "name_source")
            if not changed and final["name_source"] == row["name_source"]:
                outcome.unchanged += 1
                continue
            outcome.updated += 1
            params.append({"b_id": row["id"], **{f"b_{k}": v for k, v in final.items()}})
            if changed:
                events.append(
                    (
                        row["id"],
                        ContactUpdated(
                            contact_id=row["id"],
                            organization_id=self.org,
                            name=final["name"],
                            phone=final["phone"],
                            changed=changed,
                            attributes=final["attributes"],
                        ),
                    )
                )
        if params:
            columns = [*PROFILE_COLUMNS, "attributes", "name_source"]
            stmt = (
                update(contacts)
                .where(contacts.c.id == bindparam("b_id"), contacts.c.organization_id == self.org)
                .values({c: bindparam(f"b_{c}") for c in columns} | {"updated_at": func.now()})
            )
            await session.execute(stmt, params)
        return events


async def _stage(
    session: AsyncSession, org: uuid.UUID, events: list[tuple[uuid.UUID, EventData]]
) -> None:
    """``pytake_common.outbox.add_event`` for many events: one INSERT, one NOTIFY."""
    if not events:
        return
    headers = inject_headers()
    rows = []
    for subject, payload in events:
        event = CloudEvent.of(payload, subject=subject, tenant_id=org)
        rows.append(
            {
                "event_id": event.id,
                "topic": event.topic,
                "key": event.subject,
                "event": event.model_dump(mode="json"),
                "headers": headers,
            }
        )
    await session.execute(insert(outbox), rows)
    await session.execute(text(f"NOTIFY {CHANNEL}"))
