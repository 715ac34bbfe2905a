"""Group commit on its own: coalescing per key, order, splitting, failures kept apart."""

import asyncio

import pytest

from pytake_whatsapp_gateway.webhooks.group_commit import GroupCommit, SplitBatch


class Writes:
    def __init__(self, fail: set[int] | None = None, split: set[int] | None = None) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.fail, self.split = fail or set(), split or set()

    async def __call__(self, key: str, items: list[int]) -> list[int]:
        self.calls.append((key, list(items)))
        await asyncio.sleep(0.01)  # in flight: what arrives meanwhile queues
        if len(items) > 1 and self.split & set(items):
            raise SplitBatch()
        if self.fail & set(items):
            raise ValueError(f"bad item in {items}")
        return [i * 10 for i in items]


async def test_an_idle_key_writes_at_once_and_a_busy_one_in_batches_in_order() -> None:
    writes = Writes()
    group = GroupCommit(writes, max_batch=4)
    results = await asyncio.gather(*(group.submit("org", i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    # the first alone (nothing in flight), then what queued meanwhile, at most 4 a batch
    assert writes.calls == [
        ("org", [0]),
        ("org", [1, 2, 3, 4]),
        ("org", [5, 6, 7, 8]),
        ("org", [9]),
    ]
    assert (group.batches, group.items) == (4, 10)


async def test_a_busy_key_lingers_for_more_and_an_idle_one_never_waits() -> None:
    writes = Writes()  # a write takes 10 ms
    group = GroupCommit(writes, max_batch=4, linger_s=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await group.submit("org", 0) == 0
    assert loop.time() - started < 0.05  # alone: written at once, no linger after it
    await asyncio.sleep(0.06)  # idle for longer than a linger
    # items queued behind a write in flight wait a linger for more
    first = asyncio.gather(group.submit("org", 1), group.submit("org", 2))
    await asyncio.sleep(0.03)  # 1 written, 2 queued behind it and lingering: 3 joins
    assert await asyncio.gather(first, group.submit("org", 3)) == [[10, 20], 30]
    assert writes.calls[1:] == [("org", [1]), ("org", [2, 3])]
    # a first item less than a linger after the previous one waits for the next too
    writes.calls.clear()
    await asyncio.sleep(0.06)
    assert await group.submit("org", 4) == 40  # idle before: at once
    started = loop.time()
    five = asyncio.ensure_future(group.submit("org", 5))  # ~10 ms after 4: lingers
    await asyncio.sleep(0.02)
    assert await asyncio.gather(five, group.submit("org", 6)) == [50, 60]
    assert loop.time() - started >= 0.05
    assert writes.calls == [("org", [4]), ("org", [5, 6])]
    # a full batch does not wait
    writes.calls.clear()
    await asyncio.sleep(0.06)
    await asyncio.gather(*(group.submit("org", i) for i in range(5)))
    assert writes.calls == [("org", [0]), ("org", [1, 2, 3, 4])]


async def test_keys_are_written_apart_and_concurrently() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    a, b = await asyncio.gather(group.submit("a", 1), group.submit("b", 2))
    assert (a, b) == (10, 20)
    assert sorted(writes.calls) == [("a", [1]), ("b", [2])]


async def test_a_failing_item_fails_alone() -> None:
    writes = Writes(fail={3})
    group = GroupCommit(writes)
    outcomes = await asyncio.gather(
        *(group.submit("org", i) for i in range(5)), return_exceptions=True
    )
    assert outcomes[:3] == [0, 10, 20] and outcomes[4] == 40
    assert isinstance(outcomes[3], ValueError)
    assert ("org", [3]) in writes.calls  # tried alone after its batch failed


async def test_a_batch_asked_to_split_is_written_one_by_one_without_a_warning(caplog) -> None:
    writes = Writes(split={2})
    group = GroupCommit(writes)
    assert await asyncio.gather(*(group.submit("org", i) for i in range(4))) == [0, 10, 20, 30]
    assert writes.calls == [
        ("org", [0]),
        ("org", [1, 2, 3]),
        ("org", [1]),
        ("org", [2]),
        ("org", [3]),
    ]
    assert "one by one" not in caplog.text


async def test_a_caller_that_gives_up_does_not_take_its_item_back() -> None:
    writes = Writes()
    group = GroupCommit(writes)
    first = asyncio.create_task(group.submit("org", 1))
    await asyncio.sleep(0)
    waiting = asyncio.create_task(group.submit("org", 2))
    await asyncio.sleep(0)
    waiting.cancel()
    assert await first == 10
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.05)
    assert writes.calls == [("org", [1]), ("org", [2])]
