"""Helpers: a reference receiver (a real HTTP server on loopback), internal events in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from aiokafka.structs import ConsumerRecord
from sqlalchemy import select

from pytake_common.consumer import EventConsumer
from pytake_common.events import CloudEvent
from pytake_integrations.handlers import HANDLERS
from pytake_integrations.signing import verify
from pytake_integrations.tables import deliveries


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float


Answer = Callable[[Received, int], Awaitable[web.StreamResponse]]


async def ok(_: Received, __: int) -> web.StreamResponse:
    return web.Response(status=200, text="thanks")


@dataclass
class Receiver:
    """Records every request; ``answer(request, n)`` decides the response to the n-th."""

    answer: Answer = ok
    got: list[Received] = field(default_factory=list)
    port: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> Receiver:
        async def handle(request: web.Request) -> web.StreamResponse:
            received = Received(
                dict(request.headers), await request.read(), asyncio.get_running_loop().time()
            )
            self.got.append(received)
            return await self.answer(received, len(self.got))

        app = web.Application()
        app.router.add_post("/hook", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def verified(self, secret: str) -> list[bool]:
        return [verify(r.body, r.headers["PyTake-Signature"], secret) for r in self.got]


def internal(etype: str, org: uuid.UUID, subject: uuid.UUID, **data: Any) -> CloudEvent:
    return CloudEvent(
        source=f"pytake/{etype.split('.')[1]}",
        type=etype,
        subject=str(subject),
        tenantid=str(org),
        data={"organization_id": str(org), **{k: _json(v) for k, v in data.items()}},
    )


def _json(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def inbound(
    org: uuid.UUID, conversation: uuid.UUID, message: uuid.UUID | None = None
) -> CloudEvent:
    message = message or uuid.uuid4()
    return internal(
        "pytake.conversations.message.appended.v1",
        org,
        message,
        message_id=message,
        conversation_id=conversation,
        contact_id=uuid.uuid4(),
        direction="inbound",
        type="text",
        created_at=datetime.now(UTC),
    )


def again(original: CloudEvent) -> CloudEvent:
    return original.model_copy(update={"id": uuid.uuid4()})


def consumer_records(events: list[CloudEvent]) -> list[ConsumerRecord]:
    """``events`` as the records a consumer gets from Kafka (one partition, in order)."""
    out = []
    for offset, ev in enumerate(events):
        value = ev.to_bytes()
        out.append(
            ConsumerRecord(
                ev.topic, 0, offset, 0, 0, ev.subject.encode(), value, None, 0, len(value), []
            )
        )
    return out


async def deliver(app, settings, *events: CloudEvent) -> None:
    """Through the real idempotent consumer: inbox mark and handler in one transaction."""
    consumer = EventConsumer(settings, app.state.db, "integrations", HANDLERS)
    try:
        for record in consumer_records(list(events)):
            await consumer.process(record)
    finally:
        await consumer.close()


async def rows(app, endpoint_id: str | uuid.UUID | None = None) -> list[dict[str, Any]]:
    async with app.state.db.transaction(bypass_rls=True) as s:
        stmt = select(deliveries).order_by(deliveries.c.seq)
        if endpoint_id is not None:
            stmt = stmt.where(deliveries.c.endpoint_id == uuid.UUID(str(endpoint_id)))
        return [dict(r) for r in (await s.execute(stmt)).mappings().all()]


async def make_endpoint(client, tokens, org, url, types=("message.received",)) -> dict[str, Any]:
    r = await client.post(
        "/v1/webhook-endpoints",
        json={"url": url, "event_types": list(types)},
        headers=tokens.headers(organization_id=org),
    )
    assert r.status_code == 201, r.text
    return r.json()
