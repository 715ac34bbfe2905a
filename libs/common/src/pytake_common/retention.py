"""Retention of the messaging mechanics' bookkeeping rows.

Three tables only ever grow unless something prunes them: the consumer inbox
(``processed_events``), ``idempotency_keys`` and, per service, raw records such
as whatsapp-gateway's ``webhook_deliveries``. Each :class:`Retention` names a
table, its timestamp column and how long rows must be kept; the
:class:`RetentionWorker` that :func:`pytake_common.web.create_service_app`
starts in every service deletes older rows in small batches (short
transactions, no long locks), with one replica per table at a time through a
transaction-scoped advisory lock.

How long is long enough:

- ``processed_events`` dedupes redeliveries, which Kafka can only make while a
  record is still in its topic (7 days in ``deploy/``): keep it longer than
  topic retention, so a consumer rewound to the oldest offset still skips what
  it already applied.
- ``idempotency_keys`` answer client retries; clients retry within minutes,
  and 48 h is longer than the 24 h common in payment APIs.
- ``webhook_deliveries`` hold raw customer payloads (personal data). Meta
  retries a delivery for up to 7 days, but duplicates are caught by
  ``inbound_messages``/``status_updates``, not by the raw rows, so their
  retention is a privacy choice, not a correctness one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from sqlalchemy import Column, Table, text

from pytake_common.aio import sleep_or_stop
from pytake_common.db import Database
from pytake_common.mechanics import idempotency_keys, processed_events
from pytake_common.settings import ServiceSettings

log = logging.getLogger(__name__)

ROWS_PRUNED = Counter(
    "pytake_retention_deleted_total", "Rows deleted by the retention worker", ["service", "table"]
)


@dataclass(frozen=True, slots=True)
class Retention:
    """Rows of ``table`` whose ``column`` is older than ``max_age_s`` may go."""

    table: Table
    column: Column[object]
    max_age_s: float


def mechanics_retention(settings: ServiceSettings) -> list[Retention]:
    return [
        Retention(
            processed_events,
            processed_events.c.processed_at,
            settings.processed_events_retention_s,
        ),
        Retention(
            idempotency_keys,
            idempotency_keys.c.created_at,
            settings.idempotency_key_retention_s,
        ),
    ]


class RetentionWorker:
    def __init__(
        self,
        db: Database,
        settings: ServiceSettings,
        extra: Sequence[Retention] = (),
        *,
        batch_size: int = 5_000,
    ) -> None:
        self.db = db
        self.service = settings.service_name
        self.interval_s = settings.retention_interval_s
        self.rules = [*mechanics_retention(settings), *extra]
        self.batch_size = batch_size

    async def run(self, stop: asyncio.Event) -> None:
        # Replicas start together; spread their first passes over the interval's first tenth.
        delay = random.uniform(0, self.interval_s / 10)
        while not await sleep_or_stop(stop, delay):
            try:
                await self.prune()
            except Exception:
                log.exception("retention pass failed; next pass in %.0f s", self.interval_s)
            delay = self.interval_s

    async def prune(self) -> dict[str, int]:
        """Delete every expired row now; return the count per table."""
        counts: dict[str, int] = {}
        for rule in self.rules:
            counts[rule.table.name] = total = await self._prune(rule)
            if total:
                ROWS_PRUNED.labels(self.service, rule.table.name).inc(total)
                log.info("retention pruned rows", extra={"table": rule.table.name, "rows": total})
        return counts

    async def _prune(self, rule: Retention) -> int:
        table, column = _quoted(rule.table.name), _quoted(rule.column.name)
        # A TID scan over a bounded batch: short transactions, no long row locks. The
        # identifiers come from Table objects in code, never from input.
        statement = text(
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608
            f"SELECT ctid FROM {table} WHERE {column} < now() - make_interval(secs => :age) "
            "LIMIT :n))"
        )
        total = 0
        while True:
            async with self.db.transaction(bypass_rls=True) as session:
                locked = await session.scalar(
                    text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"pytake.retention:{rule.table.name}"},
                )
                if not locked:  # another replica is pruning this table
                    return total
                result = await session.execute(
                    statement, {"age": rule.max_age_s, "n": self.batch_size}
                )
            deleted = int(getattr(result, "rowcount", 0) or 0)
            total += deleted
            if deleted < self.batch_size:
                return total


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
