"""Webhook endpoints: where an organization's events go, and the secrets that sign them."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import delete, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common import ssrf
from pytake_common.crypto import SecretBox
from pytake_common.errors import InvalidInput, NotFound
from pytake_common.outbox import emit
from pytake_integrations import public
from pytake_integrations.events import (
    EndpointCreated,
    EndpointDeleted,
    EndpointDisabled,
    EndpointSecretRotated,
    EndpointUpdated,
)
from pytake_integrations.signing import new_secret
from pytake_integrations.tables import endpoints

ENABLED, DISABLED = "enabled", "disabled"
MAX_URL = 2048


class UrlPolicy(BaseModel):
    """https only, unless the dev-only setting allows http (and loopback) for ``make run``."""

    allow_loopback: bool = False

    def check(self, url: str) -> str:
        parts = urlsplit(url)
        schemes = ("https", "http") if self.allow_loopback else ("https",)
        if parts.scheme not in schemes:
            raise InvalidInput("the URL must be https://", field="url")
        if not parts.hostname:
            raise InvalidInput("the URL has no host", field="url")
        if parts.username or parts.password:
            raise InvalidInput("the URL must not carry credentials", field="url")
        if parts.fragment:
            raise InvalidInput("the URL must not have a #fragment", field="url")
        try:
            parts.port  # noqa: B018 - raises on an invalid port
        except ValueError as exc:
            raise InvalidInput("the URL's port is invalid", field="url") from exc
        ssrf.check_literal(parts.hostname, allow_loopback=self.allow_loopback)
        return url


def _event_types(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    unknown = sorted(set(value) - public.EVENT_TYPES)
    if unknown:
        raise ValueError(f"unknown event types {unknown}; see GET docs/webhooks.md")
    if not value:
        raise ValueError("subscribe to at least one event type")
    return sorted(set(value))


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=MAX_URL)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] = Field(min_length=1, max_length=len(public.EVENT_TYPES))

    _types = field_validator("event_types")(_event_types)


class EndpointPatch(BaseModel):
    """Given fields replace the stored ones; ``status: enabled`` re-enables a disabled one."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=8, max_length=MAX_URL)
    description: str | None = Field(default=None, max_length=500)
    event_types: list[str] | None = Field(default=None, max_length=len(public.EVENT_TYPES))
    status: Literal["enabled", "disabled"] | None = None

    _types = field_validator("event_types")(_event_types)


class RotateSecret(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How long the previous secret keeps signing too (0: stop at once).
    overlap_s: int | None = Field(default=None, ge=0, le=7 * 86_400)


class Endpoint(BaseModel):
    id: uuid.UUID
    url: str
    description: str | None
    event_types: list[str]
    status: str
    disabled_reason: str | None
    disabled_at: datetime | None
    previous_secret_expires_at: datetime | None
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(Endpoint):
    """Answered once, on create and on rotate: the secret is never shown again."""

    secret: str


async def count(session: AsyncSession, org: uuid.UUID) -> int:
    """The organization's endpoints, locked against a concurrent create (the plan limit)."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"webhook-endpoints:{org}"}
    )
    stmt = select(func.count()).select_from(endpoints).where(endpoints.c.organization_id == org)
    return int(await session.scalar(stmt) or 0)


def _view(row: Any) -> Endpoint:
    return Endpoint.model_validate(dict(row))


def _state(row: Any) -> dict[str, Any]:
    return {
        "endpoint_id": row["id"],
        "organization_id": row["organization_id"],
        "url": row["url"],
        "event_types": list(row["event_types"]),
        "status": row["status"],
    }


async def create(
    session: AsyncSession,
    box: SecretBox,
    org: uuid.UUID,
    user: uuid.UUID | None,
    body: EndpointCreate,
    policy: UrlPolicy,
) -> EndpointWithSecret:
    url = policy.check(body.url)
    secret = new_secret()
    row = (
        (
            await session.execute(
                endpoints.insert()
                .values(
                    id=uuid.uuid4(),
                    organization_id=org,
                    url=url,
                    description=body.description,
                    event_types=body.event_types,
                    secret_enc=box.encrypt(secret),
                )
                .returning(*endpoints.c)
            )
        )
        .mappings()
        .one()
    )
    await emit(session, EndpointCreated(**_state(row), created_by=user), row["id"])
    return EndpointWithSecret(**_view(row).model_dump(), secret=secret)


async def load(
    session: AsyncSession, org: uuid.UUID, endpoint_id: uuid.UUID, *, lock: bool = False
) -> Any:
    stmt = select(endpoints).where(
        endpoints.c.id == endpoint_id, endpoints.c.organization_id == org
    )
    if lock:
        stmt = stmt.with_for_update()
    row = (await session.execute(stmt)).mappings().first()
    if row is None:
        raise NotFound("webhook endpoint not found")
    return row


async def get(session: AsyncSession, org: uuid.UUID, endpoint_id: uuid.UUID) -> Endpoint:
    return _view(await load(session, org, endpoint_id))


async def list_page(
    session: AsyncSession, org: uuid.UUID, limit: int, after: tuple[datetime, uuid.UUID] | None
) -> tuple[list[Endpoint], bool]:
    stmt = select(endpoints).where(endpoints.c.organization_id == org)
    if after is not None:
        stmt = stmt.where(tuple_(endpoints.c.created_at, endpoints.c.id) > tuple_(*after))
    stmt = stmt.order_by(endpoints.c.created_at, endpoints.c.id).limit(limit + 1)
    rows = (await session.execute(stmt)).mappings().all()
    return [_view(r) for r in rows[:limit]], len(rows) > limit


async def patch(
    session: AsyncSession,
    org: uuid.UUID,
    user: uuid.UUID | None,
    endpoint_id: uuid.UUID,
    body: EndpointPatch,
    policy: UrlPolicy,
) -> Endpoint:
    await load(session, org, endpoint_id, lock=True)
    values: dict[str, Any] = {}
    if body.url is not None:
        values["url"] = policy.check(body.url)
    if "description" in body.model_fields_set:
        values["description"] = body.description
    if body.event_types is not None:
        values["event_types"] = body.event_types
    if body.status == ENABLED:
        values.update(
            status=ENABLED,
            disabled_reason=None,
            disabled_at=None,
            failing_since=None,
            consecutive_failures=0,
        )
    elif body.status == DISABLED:
        values.update(
            status=DISABLED, disabled_reason="disabled by an admin", disabled_at=func.now()
        )
    if not values:
        return await get(session, org, endpoint_id)
    row = (
        (
            await session.execute(
                update(endpoints)
                .where(endpoints.c.id == endpoint_id, endpoints.c.organization_id == org)
                .values(**values, updated_at=func.now())
                .returning(*endpoints.c)
            )
        )
        .mappings()
        .one()
    )
    await emit(session, EndpointUpdated(**_state(row), updated_by=user), endpoint_id)
    return _view(row)


async def rotate_secret(
    session: AsyncSession,
    box: SecretBox,
    org: uuid.UUID,
    user: uuid.UUID | None,
    endpoint_id: uuid.UUID,
    overlap_s: int,
) -> EndpointWithSecret:
    old = await load(session, org, endpoint_id, lock=True)
    secret = new_secret()
    expires = datetime.now(UTC) + timedelta(seconds=overlap_s) if overlap_s else None
    row = (
        (
            await session.execute(
                update(endpoints)
                .where(endpoints.c.id == endpoint_id, endpoints.c.organization_id == org)
                .values(
                    secret_enc=box.encrypt(secret),
                    previous_secret_enc=old["secret_enc"] if expires else None,
                    previous_secret_expires_at=expires,
                    updated_at=func.now(),
                )
                .returning(*endpoints.c)
            )
        )
        .mappings()
        .one()
    )
    rotated = EndpointSecretRotated(
        endpoint_id=endpoint_id, organization_id=org, previous_expires_at=expires, rotated_by=user
    )
    await emit(session, rotated, endpoint_id)
    return EndpointWithSecret(**_view(row).model_dump(), secret=secret)


async def remove(
    session: AsyncSession, org: uuid.UUID, user: uuid.UUID | None, endpoint_id: uuid.UUID
) -> None:
    await load(session, org, endpoint_id, lock=True)
    await session.execute(
        delete(endpoints).where(endpoints.c.id == endpoint_id, endpoints.c.organization_id == org)
    )
    deleted = EndpointDeleted(endpoint_id=endpoint_id, organization_id=org, deleted_by=user)
    await emit(session, deleted, endpoint_id)


async def disable(
    session: AsyncSession, org: uuid.UUID, endpoint_id: uuid.UUID, reason: str
) -> bool:
    """The platform stops deliveries to an endpoint (410 Gone, a day of failures)."""
    now = datetime.now(UTC)
    done = await session.execute(
        update(endpoints)
        .where(
            endpoints.c.id == endpoint_id,
            endpoints.c.organization_id == org,
            endpoints.c.status == ENABLED,
        )
        .values(status=DISABLED, disabled_reason=reason[:500], disabled_at=now, updated_at=now)
        .returning(endpoints.c.id)
    )
    if done.first() is None:
        return False
    disabled = EndpointDisabled(
        endpoint_id=endpoint_id, organization_id=org, reason=reason[:500], disabled_at=now
    )
    await emit(session, disabled, endpoint_id)
    return True


def signing_secrets(decrypt: Callable[[str], str], row: Any, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, then the previous one in its overlap
    (``decrypt``: a :class:`SecretBox`'s, or one that remembers what it decrypted)."""
    found = [decrypt(row["secret_enc"])]
    expires = row["previous_secret_expires_at"]
    if row["previous_secret_enc"] and expires is not None and expires > now:
        found.append(decrypt(row["previous_secret_enc"]))
    return found


class SealedAnswers:
    """Idempotency-Key answers of create/rotate hold a secret: kept encrypted at rest."""

    def __init__(self, secret_keys: str) -> None:
        self._box = SecretBox(secret_keys, purpose="integrations-idempotency-answers")

    def seal(self, body: Any) -> Any:
        return {"sealed": self._box.encrypt(json.dumps(body))}

    def unseal(self, stored: Any) -> Any:
        return json.loads(self._box.decrypt(stored["sealed"]))
