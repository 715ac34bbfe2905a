"""Broadcast replicas: every process keeps an in-memory view built from a topic.

Unlike an :class:`~pytake_common.consumer.EventConsumer` (one member of a group
handles each record once), a replica consumes *without* a consumer group, so
every replica of every service reads every record from the start of the topic
and then follows it. It is for small, fast-changing policy state that every
request must consult without a call: revoked sessions, suspended
organizations, plan limits. Latency from publish to effect is the relay's
wake-up plus one fetch (well under 2 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer
from pydantic import ValidationError

from pytake_common.aio import sleep_or_stop
from pytake_common.events import CloudEvent
from pytake_common.settings import ServiceSettings

log = logging.getLogger(__name__)


class BroadcastReplica:
    def __init__(self, settings: ServiceSettings, topics: list[str], name: str) -> None:
        self.settings = settings
        self.topics = topics
        self.name = name
        self.applied = 0

    def handlers(self) -> dict[str, Callable[[CloudEvent], None]]:
        """Event type → how it changes the view (subclasses say which events matter)."""
        return {}

    def apply(self, event: CloudEvent) -> None:
        """Apply one event now (tests and local fast paths use this directly)."""
        if handler := self.handlers().get(event.type):
            handler(event)
            self.applied += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Follow this view's topics on a consumer of its own (a process with several
        views runs them on one :class:`ReplicaFeed` instead)."""
        await ReplicaFeed(self.settings, [self], self.name).run(stop)

    def _apply_logged(self, event: CloudEvent) -> None:
        try:
            self.apply(event)
        except (KeyError, ValueError, TypeError) as exc:
            log.warning(
                "replica %s skipped %s",
                self.name,
                event.type,
                extra={"event_id": str(event.id), "error": repr(exc)},
            )


class ReplicaFeed:
    """One group-less consumer for all of a process's broadcast views.

    Every view on a consumer of its own cost a fetch every ``fetch_max_wait`` per view and
    process, idle or not: with two views in each of nine services (revocations and the
    organization directory), those fetches were most of the broker's requests on an idle
    platform, and most of its CPU on the local Tansu broker (docs/benchmarks.md). A record
    goes to each view that follows its topic.
    """

    def __init__(
        self, settings: ServiceSettings, views: Sequence[BroadcastReplica], name: str = "replicas"
    ) -> None:
        self.settings = settings
        self.views = list(views)
        self.name = name
        self.by_topic: dict[str, list[BroadcastReplica]] = {}
        for view in self.views:
            for topic in view.topics:
                self.by_topic.setdefault(topic, []).append(view)

    async def run(self, stop: asyncio.Event) -> None:
        if not self.by_topic:
            return
        backoff = 0.5
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                *sorted(self.by_topic),
                bootstrap_servers=self.settings.kafka_bootstrap,
                group_id=None,
                client_id=f"pytake-{self.settings.service_name}-{self.name}",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                metadata_max_age_ms=2_000,
                fetch_max_wait_ms=self.settings.kafka_replica_fetch_max_wait_ms,
            )
            try:
                await consumer.start()
                backoff = 0.5
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=250, max_records=500)
                    for tp, records in batches.items():
                        views = self.by_topic.get(tp.topic, ())
                        for record in records:
                            event = _parse(record.value)
                            if event is not None:
                                for view in views:
                                    view._apply_logged(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("replica %s error, restarting", self.name, extra={"error": repr(exc)})
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()


def _parse(value: bytes | None) -> CloudEvent | None:
    if value is None:
        return None
    try:
        return CloudEvent.model_validate_json(value)
    except ValidationError:
        return None  # not ours to judge: the owning consumer dead-letters malformed records
