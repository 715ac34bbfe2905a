"""Group commit: concurrent writes of one key coalesced into one statement.

While a write of a key (an organization: its rows are written on a connection bound
to it) is in flight, the writes of that key that arrive queue; when it ends, everything
queued goes in ONE call of ``write`` (one statement, one commit), and so on. An idle
key adds no latency (a write alone is sent at once); a busy one pays one statement and
one commit per batch instead of per request, which is where the CPU of PostgreSQL and
of the client goes at high rates.

``linger_s``: a busy key waits that long before a write, for more items to join it: when
items queued while its last write was in flight, or when its item comes less than
``linger_s`` after the previous one (its rate is above one per linger). At a high rate
the statements then carry several times as many items (PostgreSQL's and the client's
work per statement is most of the work per item), for a few milliseconds more on those
acknowledgements; a key idle for longer than a linger never waits.

Every caller waits for the commit that holds its item: the acknowledgement still
means "durable". When a batch of several fails, each of its items is tried alone (one
item's failure never fails the others); a caller that gives up waiting does not take
its item back (a write that commits for a caller gone is what a retry would find).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


#: Keys whose last arrival is remembered before they are all forgotten (a key forgotten
#: only loses one linger).
MAX_KEYS = 10_000


class SplitBatch(Exception):
    """Raised by ``write`` for a batch whose items must go one by one (nothing written)."""


class GroupCommit(Generic[K, T, R]):
    """``write(key, items)`` returns one result per item, in order (or raises
    :class:`SplitBatch` for a batch of several, to be called again for each alone)."""

    def __init__(
        self,
        write: Callable[[K, list[T]], Awaitable[list[R]]],
        max_batch: int = 100,
        linger_s: float = 0.0,
    ) -> None:
        self._write = write
        self.max_batch = max_batch
        self.linger_s = linger_s
        self._queued: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        #: When each key's last item came (forgotten all at once past MAX_KEYS keys).
        self._arrived: dict[K, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        #: Batches written and items in them (for the benchmarks and the tests).
        self.batches = 0
        self.items = 0

    async def submit(self, key: K, item: T) -> R:
        """Write ``item`` with the others of ``key`` that wait; its result once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        now = loop.time()
        # Another item of the key came less than a linger ago: more are likely to come
        # during one, so even a first item waits for them (an idle key's never does).
        hot = now - self._arrived.get(key, -math.inf) < self.linger_s
        if len(self._arrived) >= MAX_KEYS:
            self._arrived.clear()
        self._arrived[key] = now
        queue = self._queued.get(key)
        if queue is None:  # nothing of this key in flight: this one leads
            self._queued[key] = queue = []
            task = asyncio.create_task(self._drain(key, [(item, future)], hot))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            queue.append((item, future))
        return await asyncio.shield(future)

    async def _drain(self, key: K, batch: list[tuple[T, asyncio.Future[R]]], linger: bool) -> None:
        try:
            while batch:
                if linger:  # busy: let more join this batch
                    await asyncio.sleep(self.linger_s)
                    queue, room = self._queued[key], self.max_batch - len(batch)
                    batch, self._queued[key] = batch + queue[:room], queue[room:]
                await self._run(key, batch)
                queue = self._queued[key]
                # Items queued during that write: the key is busy, more will come.
                linger = self.linger_s > 0 and 0 < len(queue) < self.max_batch
                batch, self._queued[key] = queue[: self.max_batch], queue[self.max_batch :]
        finally:
            for _, future in [*batch, *self._queued.pop(key, [])]:  # only when cancelled
                if not future.done():
                    future.set_exception(asyncio.CancelledError())

    async def _run(self, key: K, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.batches += 1
        self.items += len(batch)
        try:
            results = await self._write(key, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            if not isinstance(exc, SplitBatch):
                log.warning(
                    "group write failed, its items are written one by one",
                    extra={"items": len(batch), "error": repr(exc)},
                )
            for one in batch:
                await self._run(key, [one])
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
