"""The connected numbers a webhook names, from memory instead of a query per delivery.

Looking up the numbers (across tenants) cost every delivery a round trip before its
write. :class:`NumberDirectory` keeps the active numbers it has looked up, keyed by
``phone_number_id``, for as long as it hears about their changes: a trigger on
``numbers`` NOTIFYs ``pytake_numbers`` with the ``phone_number_id`` of every insert,
removal and change of a column the intake reads (migration 0003), whichever replica
made it, and the directory drops those entries.

It serves only while its LISTEN connection is up: until it is, after it is lost and
until it is back, every lookup goes to the database (and nothing is remembered, since
a change meanwhile would not be heard). A lookup racing a change cannot store what it
read before the change: entries are stored only when no notification (of any number)
arrived since the lookup began. Unknown numbers are never remembered, so a number
connected a moment ago is found at once. What remains is the delay of a notification
(the commit to its delivery, milliseconds), and the intake covers the case that
matters: a signature that the remembered secret does not verify is checked again
against the database before the delivery is refused (a rotated app secret).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Iterable
from typing import Any

import asyncpg

from pytake_common.aio import first_set, sleep_or_stop
from pytake_common.pgtenant import asyncpg_dsn
from pytake_whatsapp_gateway.webhooks.signature import KnownNumber

log = logging.getLogger(__name__)
CHANNEL = "pytake_numbers"


class NumberDirectory:
    """Active numbers by ``phone_number_id`` (at most ``size``), while listening."""

    def __init__(self, url: str, size: int = 10_000) -> None:
        self._dsn = asyncpg_dsn(url)
        self.size = size
        self._by_phone: dict[str, list[KnownNumber]] = {}
        #: Bumped by every notification and (re)connection: a lookup that began under an
        #: older generation stores nothing.
        self.generation = 0
        self.live = False

    # --- reading ---------------------------------------------------------------------

    def get(self, phone_number_ids: Iterable[str]) -> list[KnownNumber] | None:
        """The remembered numbers of every id, or None when one is not remembered (or
        the directory is not live): the caller then asks the database."""
        if not self.live:
            return None
        found: list[KnownNumber] = []
        for phone_number_id in phone_number_ids:
            numbers = self._by_phone.get(phone_number_id)
            if numbers is None:
                return None
            found.extend(numbers)
        return found

    def put(
        self, generation: int, phone_number_ids: Iterable[str], found: list[KnownNumber]
    ) -> None:
        """Remember what a lookup of ``phone_number_ids`` begun at ``generation`` found
        (its numbers of those ids; ids it did not find are not remembered)."""
        if not self.live or generation != self.generation:
            return
        wanted = set(phone_number_ids)
        by_phone: dict[str, list[KnownNumber]] = {}
        for number in found:
            if number.phone_number_id in wanted:
                by_phone.setdefault(number.phone_number_id, []).append(number)
        for phone_number_id, numbers in by_phone.items():
            if phone_number_id not in self._by_phone and len(self._by_phone) >= self.size:
                self._by_phone.pop(next(iter(self._by_phone)))  # the oldest entry
            self._by_phone[phone_number_id] = numbers

    def forget(self, phone_number_id: str | None = None) -> None:
        """Drop one id (None: everything) and invalidate lookups in flight."""
        self.generation += 1
        if phone_number_id is None:
            self._by_phone.clear()
        else:
            self._by_phone.pop(phone_number_id, None)

    # --- listening -------------------------------------------------------------------

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.forget(payload)

    def _on_lost(self, lost: asyncio.Event, _conn: Any) -> None:
        self._go_dark()
        lost.set()

    def _go_dark(self) -> None:
        self.live = False
        self.forget()

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` (a service worker); the directory serves meanwhile."""
        backoff = 0.5
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(self._dsn)
                conn.add_termination_listener(functools.partial(self._on_lost, lost))
                await conn.add_listener(CHANNEL, self._on_notify)
                self.forget()  # changes made before LISTEN took effect were not heard
                self.live = True
                backoff = 0.5
                while not stop.is_set() and not lost.is_set():
                    # A connection that died without a FIN is found by this probe.
                    await first_set(stop, lost, timeout=15.0)
                    if not stop.is_set() and not lost.is_set():
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), 10.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "number directory not listening, intake looks numbers up",
                    extra={"error": repr(exc), "backoff_s": backoff},
                )
            finally:
                self._go_dark()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            if stop.is_set():
                return
            await sleep_or_stop(stop, backoff)
            backoff = min(backoff * 2, 30.0)
