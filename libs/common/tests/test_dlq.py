"""``python -m pytake_common.dlq``: list and replay dead letters against a real broker."""

import asyncio
import io
import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pytake_common import dlq

TRACEPARENT = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def cloud_event(kind: str) -> bytes:
    return json.dumps(
        {"specversion": "1.0", "id": str(uuid.uuid4()), "type": kind, "source": "pytake/test"}
    ).encode()


async def dead_letter(bootstrap: str, topic: str, *records: tuple[bytes, bytes, str]) -> None:
    """Write records to ``<topic>.dlq`` exactly as EventConsumer.dead_letter does."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for offset, (key, value, reason) in enumerate(records):
            await producer.send_and_wait(
                topic + ".dlq",
                value=value,
                key=key,
                headers=[
                    ("traceparent", TRACEPARENT),
                    ("pytake-dlq-reason", reason.encode()),
                    ("pytake-dlq-group", b"pytake-conversations"),
                    ("pytake-dlq-source", f"{topic}/0/{offset}".encode()),
                ],
            )
    finally:
        await producer.stop()


async def records_in(bootstrap: str, topic: str, expected: int, timeout: float = 30.0):
    """Every record of ``topic``: read until ``expected`` arrived, then on until the
    topic stays quiet for a second, so extra copies would be caught too. (Counted
    by reading: the local broker reports a batch's end offset as base + 1.)"""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"check-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(found) < expected and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                found.extend(batch)
        while batches := await consumer.getmany(timeout_ms=1000):
            for batch in batches.values():
                found.extend(batch)
    finally:
        await consumer.stop()
    return found


@pytest.fixture
def topic() -> str:
    return f"pytake.test.dlq{uuid.uuid4().hex[:10]}"


async def test_replay_puts_each_dead_letter_back_once_without_dlq_headers(kafka_bootstrap, topic):
    first, second = cloud_event("pytake.test.a.v1"), cloud_event("pytake.test.b.v1")
    await dead_letter(
        kafka_bootstrap,
        topic,
        (b"aggregate-1", first, "RuntimeError: handler bug\nline two"),
        (b"aggregate-2", second, "IntegrityError: missing row"),
    )

    out = io.StringIO()
    code = await asyncio.to_thread(
        dlq.main, ["replay", "--topic", topic + ".dlq", "--bootstrap", kafka_bootstrap], out
    )
    assert code == 0
    printed = out.getvalue()
    assert "reason=RuntimeError: handler bug\\nline two" in printed
    assert "reason=IntegrityError: missing row" in printed
    assert "type=pytake.test.a.v1" in printed and "group=pytake-conversations" in printed
    assert f"replayed 2 record(s) from {topic}.dlq to {topic}" in printed

    found = await records_in(kafka_bootstrap, topic, expected=2)
    assert sorted((r.key, r.value) for r in found) == [
        (b"aggregate-1", first),
        (b"aggregate-2", second),
    ]
    for record in found:
        assert list(record.headers) == [("traceparent", TRACEPARENT)]

    again = await dlq.replay(kafka_bootstrap, topic)
    assert again.replayed == 0 and again.records == []
    assert len(await records_in(kafka_bootstrap, topic, expected=2)) == 2, "nothing new"


async def test_limit_and_dry_run_and_list(kafka_bootstrap, topic):
    values = [cloud_event("pytake.test.c.v1") for _ in range(3)]
    await dead_letter(
        kafka_bootstrap, topic, *((b"same-key", v, f"reason {i}") for i, v in enumerate(values))
    )
    group = f"replay-{uuid.uuid4().hex[:8]}"

    dry = await dlq.replay(kafka_bootstrap, topic, group=group, dry_run=True)
    assert [r.reason for r in dry.records] == ["reason 0", "reason 1", "reason 2"]
    assert dry.replayed == 0

    out = io.StringIO()
    listed = await dlq.list_dead_letters(kafka_bootstrap, topic, group=group, out=out)
    assert len(listed.records) == 3, "a dry run commits nothing"
    assert out.getvalue().count("reason=reason ") == 3

    one = await dlq.replay(kafka_bootstrap, topic, group=group, limit=1)
    assert one.replayed == 1 and one.records[0].reason == "reason 0"
    pending = await dlq.list_dead_letters(kafka_bootstrap, topic, group=group)
    assert [r.reason for r in pending.records] == ["reason 1", "reason 2"]
    everything = await dlq.list_dead_letters(
        kafka_bootstrap, topic, group=group, from_beginning=True
    )
    assert len(everything.records) == 3

    rest = await dlq.replay(kafka_bootstrap, topic, group=group)
    assert [r.reason for r in rest.records] == ["reason 1", "reason 2"]
    found = await records_in(kafka_bootstrap, topic, expected=3)
    # Same key, same partition, original order.
    assert [r.value for r in found] == values


async def test_missing_dead_letter_topic_is_nothing_to_do(kafka_bootstrap, topic):
    run = await dlq.replay(kafka_bootstrap, topic)
    assert run.records == [] and run.dlq_topic == topic + ".dlq"


def test_replay_headers_drop_only_the_dlq_ones():
    letter = dlq.DeadLetter(
        topic="t.dlq",
        partition=0,
        offset=4,
        key=None,
        value=b"not json",
        headers=(
            ("traceparent", TRACEPARENT),
            ("pytake-dlq-reason", b"boom"),
            ("tracestate", b"k=v"),
            ("pytake-dlq-source", b"t/0/9"),
        ),
    )
    assert letter.replay_headers() == [("traceparent", TRACEPARENT), ("tracestate", b"k=v")]
    assert letter.event_summary() == (None, None)
    assert letter.describe() == "dlq=t.dlq/0/4 source=t/0/9 reason=boom"
    assert dlq.topic_pair("a.b") == dlq.topic_pair("a.b.dlq") == ("a.b", "a.b.dlq")
    with pytest.raises(ValueError):
        dlq.topic_pair(".dlq")


def test_cli_rejects_a_non_positive_limit(capsys):
    with pytest.raises(SystemExit):
        dlq.main(["replay", "--topic", "t", "--limit", "0"])
    assert "must be at least 1" in capsys.readouterr().err
