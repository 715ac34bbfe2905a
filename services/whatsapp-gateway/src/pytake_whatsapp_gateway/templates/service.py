"""Templates through Meta's Graph API: create, list (local copies), sync, delete.

Every call is made with the access token of the organization's number, on the
number's WABA. Meta's refusals become problem+json: its validation errors
(code 100, HTTP 400) are the caller's to fix (422), anything else is an
upstream failure (502); both carry Meta's code and message. A token Meta
rejects (190) also marks the number disconnected.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, and_, delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.crypto import SecretBox, SecretDecryptionError
from pytake_common.db import Database
from pytake_common.errors import DomainError, NotFound
from pytake_common.pagination import TEXT, keyset
from pytake_whatsapp_gateway.config import Settings
from pytake_whatsapp_gateway.events import TemplateSynced
from pytake_whatsapp_gateway.numbers import ACTIVE, CONNECTED, mark_disconnected, refresh_tier
from pytake_whatsapp_gateway.sending.errors import TOKEN_EXPIRED
from pytake_whatsapp_gateway.sending.graph import GraphAnswer, GraphClient
from pytake_whatsapp_gateway.tables import numbers, templates
from pytake_whatsapp_gateway.templates.store import TemplateFacts, emit_template, upsert_template
from pytake_whatsapp_gateway.tiers import read_tier

log = logging.getLogger(__name__)

#: Templates asked of Meta per page while syncing.
SYNC_PAGE_SIZE = 100
#: A runaway ``paging.next`` chain stops here (100,000 templates; Meta allows far fewer).
MAX_SYNC_PAGES = 1000
FIELDS = "name,language,status,category,components,id,rejected_reason"


class MetaUpstreamError(DomainError):
    status, code, title = 502, "whatsapp_upstream_error", "WhatsApp's API failed"


class MetaValidationError(DomainError):
    status, code, title = 422, "whatsapp_validation_error", "WhatsApp refused the request"


class NumberCredentialsUnreadable(DomainError):
    status, code, title = 409, "credentials_unreadable", "Number credentials unreadable"


@dataclass(frozen=True, slots=True)
class NumberAccess:
    organization_id: uuid.UUID
    number_id: uuid.UUID
    waba_id: str
    access_token: str
    phone_number_id: str


@dataclass(frozen=True, slots=True)
class NewTemplate:
    name: str
    language: str
    category: str
    components: list[dict[str, Any]]


def meta_error(answer: GraphAnswer) -> DomainError:
    """The problem to answer for a Graph call that failed."""
    error = answer.error
    assert error is not None
    extra: dict[str, Any] = {"meta_code": error.code, "meta_message": error.title}
    if answer.status == 400 and error.code == 100:
        return MetaValidationError(error.detail, **extra)
    return MetaUpstreamError(error.detail, **extra)


def facts_from_meta(waba_id: str, item: dict[str, Any]) -> TemplateFacts | None:
    """One element of Meta's ``data`` list; None when it lacks a name or language."""
    name, language = item.get("name"), item.get("language")
    if not isinstance(name, str) or not name or not isinstance(language, str) or not language:
        return None
    components = item.get("components")
    reason = item.get("rejected_reason")

    def text(key: str) -> str | None:
        value = item.get(key)
        return str(value) if isinstance(value, str | int) and value != "" else None

    return TemplateFacts(
        waba_id=waba_id,
        name=name[:512],
        language=language[:20],
        meta_template_id=text("id"),
        status=text("status") or "PENDING",
        category=text("category"),
        reason=reason if isinstance(reason, str) and reason not in ("", "NONE") else None,
        components=[c for c in components if isinstance(c, dict)]
        if isinstance(components, list)
        else [],
    )


def _changed(after: Row[Any], before: Row[Any] | None) -> bool:
    if before is None:
        return True
    return any(
        getattr(after, c) != getattr(before, c)
        for c in ("status", "category", "meta_template_id", "components", "rejected_reason")
    )


#: a WABA's templates, by (name, language)
TEMPLATES = keyset("templates", TEXT, TEXT)


async def list_templates(
    session: AsyncSession,
    organization_id: uuid.UUID,
    waba_id: str,
    limit: int,
    cursor: str | None,
    status: str | None = None,
) -> tuple[list[Row[Any]], str | None]:
    """Local copies of a WABA's templates, by (name, language), keyset-paginated."""
    query = select(templates).where(
        templates.c.organization_id == organization_id, templates.c.waba_id == waba_id
    )
    if status:
        query = query.where(templates.c.status == status.upper())
    if cursor:
        query = query.where(
            tuple_(templates.c.name, templates.c.language) > tuple_(*TEMPLATES.decode(cursor))
        )
    rows = list(
        (
            await session.execute(
                query.order_by(templates.c.name, templates.c.language).limit(limit + 1)
            )
        ).all()
    )
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, TEMPLATES.encode((rows[-1].name, rows[-1].language))


class TemplateService:
    def __init__(self, settings: Settings, db: Database, box: SecretBox, graph: GraphClient):
        self.settings = settings
        self.db = db
        self.box = box
        self.graph = graph
        self.page_size = SYNC_PAGE_SIZE

    async def access(self, organization_id: uuid.UUID, number_id: uuid.UUID) -> NumberAccess:
        """The organization's number and its token; another organization's → 404."""
        async with self.db.transaction(organization_id=organization_id) as session:
            row = (
                await session.execute(
                    select(
                        numbers.c.waba_id, numbers.c.access_token_enc, numbers.c.phone_number_id
                    ).where(
                        numbers.c.organization_id == organization_id,
                        numbers.c.id == number_id,
                        ACTIVE,
                    )
                )
            ).first()
        if row is None:
            raise NotFound("WhatsApp number not found")
        try:
            token = self.box.decrypt(row.access_token_enc)
        except SecretDecryptionError:
            raise NumberCredentialsUnreadable(
                "The number's stored credentials cannot be read; reconnect it"
            ) from None
        return NumberAccess(organization_id, number_id, row.waba_id, token, row.phone_number_id)

    async def _failed(self, access: NumberAccess, answer: GraphAnswer) -> DomainError:
        assert answer.error is not None
        if answer.error.code == TOKEN_EXPIRED or answer.error.disconnects:
            async with self.db.transaction(organization_id=access.organization_id) as session:
                await mark_disconnected(
                    session, access.organization_id, access.number_id, answer.error.detail
                )
        return meta_error(answer)

    async def create(
        self, session: AsyncSession, access: NumberAccess, new: NewTemplate
    ) -> Row[Any]:
        """Submit ``new`` to Meta and keep its local copy (``session`` is the caller's)."""
        answer = await self.graph.call(
            "POST",
            self.graph.url(access.waba_id, "message_templates"),
            access.access_token,
            json={
                "name": new.name,
                "language": new.language,
                "category": new.category,
                "components": new.components,
            },
        )
        if answer.error is not None:
            raise await self._failed(access, answer)
        meta_id = answer.body.get("id")
        status = answer.body.get("status")
        category = answer.body.get("category")
        after, _ = await upsert_template(
            session,
            access.organization_id,
            TemplateFacts(
                waba_id=access.waba_id,
                name=new.name,
                language=new.language,
                meta_template_id=str(meta_id) if meta_id is not None else None,
                status=status if isinstance(status, str) and status else "PENDING",
                category=category if isinstance(category, str) and category else new.category,
                components=new.components,
            ),
        )
        await emit_template(session, TemplateSynced, after, access.number_id)
        return after

    async def delete(self, access: NumberAccess, name: str) -> None:
        answer = await self.graph.call(
            "DELETE",
            self.graph.url(access.waba_id, "message_templates"),
            access.access_token,
            params={"name": name},
        )
        if answer.error is not None:
            raise await self._failed(access, answer)
        async with self.db.transaction(organization_id=access.organization_id) as session:
            await session.execute(
                delete(templates).where(
                    templates.c.organization_id == access.organization_id,
                    templates.c.waba_id == access.waba_id,
                    templates.c.name == name,
                )
            )

    async def fetch_all(self, access: NumberAccess) -> list[dict[str, Any]]:
        """Every template of the WABA, following ``paging.next`` until it is absent."""
        url: str | None = self.graph.url(access.waba_id, "message_templates")
        params: dict[str, str] | None = {"limit": str(self.page_size), "fields": FIELDS}
        items: list[dict[str, Any]] = []
        for _ in range(MAX_SYNC_PAGES):
            if url is None:
                return items
            answer = await self.graph.call("GET", url, access.access_token, params=params)
            if answer.error is not None:
                raise await self._failed(access, answer)
            data = answer.body.get("data")
            if not isinstance(data, list):
                raise MetaUpstreamError("WhatsApp answered a template page without data")
            items.extend(d for d in data if isinstance(d, dict))
            paging = answer.body.get("paging")
            following = paging.get("next") if isinstance(paging, dict) else None
            url = following if isinstance(following, str) and following and data else None
            params = None  # ``next`` is absolute and carries its own query
        raise MetaUpstreamError("WhatsApp's template paging did not end")

    async def sync(self, access: NumberAccess) -> int:
        """Upsert the local copies from Meta; drop those Meta no longer has; refresh the
        number's messaging limit tier.

        Emits ``template.synced`` per template new or changed (returns how many), and
        ``number.updated`` when the tier changed.
        """
        items = await self.fetch_all(access)
        tier = await read_tier(self.graph, access.access_token, access.phone_number_id)
        changed = 0
        seen: list[tuple[str, str]] = []
        async with self.db.transaction(organization_id=access.organization_id) as session:
            if tier is not None:
                await refresh_tier(session, access.organization_id, access.number_id, tier)
            for item in items:
                facts = facts_from_meta(access.waba_id, item)
                if facts is None:
                    log.warning("template without name or language ignored in a sync")
                    continue
                seen.append((facts.name, facts.language))
                after, before = await upsert_template(session, access.organization_id, facts)
                if _changed(after, before):
                    changed += 1
                    await emit_template(session, TemplateSynced, after, access.number_id)
            gone = and_(
                templates.c.organization_id == access.organization_id,
                templates.c.waba_id == access.waba_id,
            )
            if seen:
                gone = and_(gone, tuple_(templates.c.name, templates.c.language).not_in(seen))
            await session.execute(delete(templates).where(gone))
        return changed


@dataclass(frozen=True, slots=True)
class SyncRound:
    wabas: int
    failed: int
    changed: int


async def sync_all(service: TemplateService) -> SyncRound:
    """Sync every connected number's WABA once (one number per organization and WABA).

    A WABA that fails is logged and left for the next round; the others go on.
    """
    async with service.db.transaction(bypass_rls=True) as session:
        rows = (
            await session.execute(
                select(numbers.c.organization_id, numbers.c.id, numbers.c.waba_id)
                .where(ACTIVE, numbers.c.status == CONNECTED)
                .order_by(numbers.c.created_at, numbers.c.id)
            )
        ).all()
    chosen: dict[tuple[uuid.UUID, str], uuid.UUID] = {}
    for row in rows:
        chosen.setdefault((row.organization_id, row.waba_id), row.id)
    failed = changed = 0
    for (organization_id, waba_id), number_id in chosen.items():
        try:
            changed += await service.sync(await service.access(organization_id, number_id))
        except Exception as exc:
            failed += 1
            log.warning(
                "template sync of a WABA failed; retried next round",
                extra={
                    "organization_id": str(organization_id),
                    "number_id": str(number_id),
                    "waba_id": waba_id,
                    "error": getattr(exc, "detail", None) or repr(exc),
                },
            )
    return SyncRound(wabas=len(chosen), failed=failed, changed=changed)
