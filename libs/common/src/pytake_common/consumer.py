"""Idempotent consumer (inbox): each event handled once per consumer group.

For each record the handler runs in one database transaction that first
records ``(group, event id)`` in ``processed_events`` (insert-first,
``ON CONFLICT DO NOTHING``): a duplicate delivery finds the mark and does
nothing. Offsets are committed to Kafka only after the database commit, so a
crash in between redelivers a record the mark then skips. Failures are retried
with backoff; after ``consumer_max_attempts`` (or at once for a malformed
record) the record goes to ``<topic>.dlq`` with the reason in its headers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from pytake_common.context import organization_id_var
from pytake_common.db import Database
from pytake_common.events import CloudEvent
from pytake_common.kafka import make_consumer, make_producer
from pytake_common.mechanics import processed_events
from pytake_common.metrics import CONSUMER_LAG, EVENTS_CONSUMED, EVENTS_DEAD_LETTERED
from pytake_common.settings import ServiceSettings
from pytake_common.tracing import context_from_kafka, tracer

log = logging.getLogger(__name__)

Handler = Callable[[AsyncSession, CloudEvent], Awaitable[None]]


class PermanentError(Exception):
    """A record that can never succeed: dead-letter it without retrying."""


class EventConsumer:
    def __init__(
        self,
        settings: ServiceSettings,
        db: Database,
        group: str,
        handlers: Mapping[str, Handler],
    ) -> None:
        self.settings = settings
        self.db = db
        self.group = group
        self.handlers = dict(handlers)
        self.topics = sorted({t.rsplit(".", 2)[0] for t in self.handlers})
        self.service = settings.service_name
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self.ready = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        backoff = 0.5
        while not stop.is_set():
            try:
                await self._run_once(stop)
                backoff = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "consumer error, restarting", extra={"group": self.group, "error": repr(exc)}
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _run_once(self, stop: asyncio.Event) -> None:
        consumer = make_consumer(self.settings, self.group, self.topics)
        self._consumer = consumer
        await consumer.start()
        try:
            while not stop.is_set():
                self.ready.set()
                batches = await consumer.getmany(timeout_ms=250, max_records=200)
                for tp, records in batches.items():
                    for record in records:
                        await self.process(record)
                    await self.commit({tp: OffsetAndMetadata(records[-1].offset + 1, "")})
                    hw = consumer.highwater(tp)
                    if hw is not None:
                        CONSUMER_LAG.labels(self.service, self.group, tp.topic, tp.partition).set(
                            max(hw - records[-1].offset - 1, 0)
                        )
        finally:
            await self.close()

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit offsets after the records' database transactions committed."""
        assert self._consumer is not None
        await self._consumer.commit(offsets)

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._dlq is not None:
            await self._dlq.stop()
            self._dlq = None

    async def process(self, record: ConsumerRecord[Any, Any]) -> None:
        try:
            event = CloudEvent.model_validate_json(record.value)
        except ValidationError as exc:
            await self.dead_letter(record, f"undecodable record: {exc.error_count()} errors")
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            return  # another consumer's event on a shared topic
        attempts = self.settings.consumer_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                outcome = await self._handle(handler, event, record)
                EVENTS_CONSUMED.labels(self.service, self.group, event.type, outcome).inc()
                return
            except (PermanentError, ValidationError) as exc:
                await self.dead_letter(record, f"permanent: {exc!r}"[:1000])
                return
            except Exception as exc:
                log.warning(
                    "handler failed",
                    extra={
                        "group": self.group,
                        "event_id": str(event.id),
                        "type": event.type,
                        "attempt": attempt,
                        "error": repr(exc),
                    },
                )
                if attempt == attempts:
                    await self.dead_letter(record, f"failed {attempts} times: {exc!r}"[:1000])
                    return
                await asyncio.sleep(self.settings.consumer_retry_backoff_s * 2 ** (attempt - 1))

    async def _handle(
        self, handler: Handler, event: CloudEvent, record: ConsumerRecord[Any, Any]
    ) -> str:
        ctx = context_from_kafka(record.headers)
        token = organization_id_var.set(event.tenantid)
        try:
            with tracer().start_as_current_span(f"consume {event.type}", context=ctx):
                async with self.db.transaction(organization_id=event.tenantid) as session:
                    inserted = await session.execute(
                        pg_insert(processed_events)
                        .values(consumer_group=self.group, event_id=event.id, event_type=event.type)
                        .on_conflict_do_nothing()
                        .returning(processed_events.c.event_id)
                    )
                    if inserted.first() is None:
                        return "duplicate"
                    await handler(session, event)
                    return "handled"
        finally:
            organization_id_var.reset(token)

    async def dead_letter(self, record: ConsumerRecord[Any, Any], reason: str) -> None:
        if self._dlq is None:
            self._dlq = make_producer(self.settings)
            await self._dlq.start()
        headers = [
            *(record.headers or ()),
            ("pytake-dlq-reason", reason.encode()),
            ("pytake-dlq-group", self.group.encode()),
            ("pytake-dlq-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
        ]
        await self._dlq.send_and_wait(
            record.topic + ".dlq", value=record.value, key=record.key, headers=headers
        )
        EVENTS_DEAD_LETTERED.labels(self.service, self.group, record.topic).inc()
        log.error(
            "record dead-lettered",
            extra={
                "group": self.group,
                "topic": record.topic,
                "offset": record.offset,
                "reason": reason,
            },
        )
