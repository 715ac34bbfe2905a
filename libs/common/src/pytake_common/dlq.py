"""Dead-letter queue tools: list and replay ``<topic>.dlq``.

A consumer that gives up on a record (see :mod:`pytake_common.consumer`) copies it
to ``<topic>.dlq`` with ``pytake-dlq-reason``, ``pytake-dlq-group`` and
``pytake-dlq-source`` headers. Once the cause is fixed (a bug deployed away, a
missing row created), ``replay`` re-produces each dead letter to its original
topic with the same key (so the same partition and per-aggregate order), the same
value and the original headers (``traceparent`` included), minus the
``pytake-dlq-*`` ones::

    python -m pytake_common.dlq list   --topic pytake.whatsapp.message
    python -m pytake_common.dlq replay --topic pytake.whatsapp.message [--limit N] [--dry-run]

``--topic`` takes the original topic or its ``.dlq``. The broker comes from
``PYTAKE_KAFKA_BOOTSTRAP`` (or ``--bootstrap``). ``replay`` commits its progress
as the consumer group ``--group`` (default ``pytake-dlq-replay``) on the ``.dlq``
topic, so each dead letter is replayed once; a crash between producing and
committing can replay a record again, which is safe because every consumer
skips events it already processed (``processed_events``). Every consumer group
of the original topic receives the replayed record; the groups that had handled
it already skip it the same way.

Each run stops at the end of the ``.dlq`` as it was when the run started, so a
record that fails again (and is dead-lettered again) waits for the next run
instead of looping.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pydantic_settings import BaseSettings, SettingsConfigDict

DLQ_SUFFIX = ".dlq"
DLQ_HEADER_PREFIX = "pytake-dlq-"
DEFAULT_GROUP = "pytake-dlq-replay"


class DlqSettings(BaseSettings):
    """The two settings the tool shares with the services (``PYTAKE_*``)."""

    model_config = SettingsConfigDict(env_prefix="PYTAKE_", extra="ignore")

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_idempotent_producer: bool = False


def topic_pair(topic: str) -> tuple[str, str]:
    """``(original topic, dead-letter topic)`` for either name."""
    original = topic.strip().removesuffix(DLQ_SUFFIX)
    if not original:
        raise ValueError("a topic name is required")
    return original, original + DLQ_SUFFIX


@dataclass(frozen=True)
class DeadLetter:
    """One record read from a ``.dlq`` topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value.decode(errors="replace")
        return None

    @property
    def reason(self) -> str | None:
        return self.header(DLQ_HEADER_PREFIX + "reason")

    @property
    def failed_group(self) -> str | None:
        return self.header(DLQ_HEADER_PREFIX + "group")

    @property
    def source(self) -> str | None:
        return self.header(DLQ_HEADER_PREFIX + "source")

    def replay_headers(self) -> list[tuple[str, bytes]]:
        """The original record's headers: everything but ``pytake-dlq-*``."""
        return [(k, v) for k, v in self.headers if not k.startswith(DLQ_HEADER_PREFIX)]

    def event_summary(self) -> tuple[str | None, str | None]:
        """``(type, id)`` of the CloudEvent in the value, when it is one."""
        try:
            body = json.loads(self.value or b"")
        except (ValueError, UnicodeDecodeError):
            return None, None
        if not isinstance(body, dict):
            return None, None
        kind, event_id = body.get("type"), body.get("id")
        return (
            kind if isinstance(kind, str) else None,
            event_id if isinstance(event_id, str) else None,
        )

    def describe(self) -> str:
        kind, event_id = self.event_summary()
        fields = {
            "dlq": f"{self.topic}/{self.partition}/{self.offset}",
            "source": self.source,
            "group": self.failed_group,
            "type": kind,
            "id": event_id,
            "key": self.key.decode(errors="replace") if self.key is not None else None,
            "reason": self.reason,
        }
        return " ".join(
            f"{name}={one_line(value)}" for name, value in fields.items() if value is not None
        )


def one_line(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


@dataclass
class DlqRun:
    """What one ``list`` or ``replay`` run saw and did."""

    topic: str
    dlq_topic: str
    dry_run: bool = False
    records: list[DeadLetter] = field(default_factory=list)
    replayed: int = 0


Batch = Callable[[list[DeadLetter]], Awaitable[None]]


async def _drain(
    consumer: AIOKafkaConsumer,
    dlq_topic: str,
    *,
    limit: int | None,
    from_beginning: bool,
    on_batch: Batch,
    idle_timeout_s: float,
) -> None:
    """Feed ``on_batch`` every record between the consumer's position and the
    end of the topic as it is now, at most ``limit`` of them."""
    await consumer.topics()  # refreshes metadata: the .dlq may be new
    partitions = consumer.partitions_for_topic(dlq_topic)
    if not partitions:
        return
    tps = [TopicPartition(dlq_topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    if from_beginning:
        await consumer.seek_to_beginning(*tps)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    remaining = {tp for tp in tps if await consumer.position(tp) < ends[tp]}
    taken = 0
    loop = asyncio.get_running_loop()
    last_progress = loop.time()
    while remaining and (limit is None or taken < limit):
        fetched = await consumer.getmany(*remaining, timeout_ms=500)
        batch: list[DeadLetter] = []
        for tp, records in fetched.items():
            for record in records:
                if record.offset >= ends[tp] or (limit is not None and taken >= limit):
                    break
                batch.append(
                    DeadLetter(
                        topic=record.topic,
                        partition=record.partition,
                        offset=record.offset,
                        key=record.key,
                        value=record.value,
                        headers=tuple(record.headers or ()),
                    )
                )
                taken += 1
        if batch:
            await on_batch(batch)
            last_progress = loop.time()
            # A batch cut short by the limit leaves the consumer's fetch position
            # ahead of what was handled; the loop ends right after, so it never
            # reads past the cut.
        elif loop.time() - last_progress > idle_timeout_s:
            raise TimeoutError(f"no records from {dlq_topic} for {idle_timeout_s:.0f}s")
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}


def _consumer(bootstrap: str, group: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        client_id="pytake-dlq",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def list_dead_letters(
    bootstrap: str,
    topic: str,
    *,
    group: str = DEFAULT_GROUP,
    limit: int | None = None,
    from_beginning: bool = False,
    out: TextIO | None = None,
    idle_timeout_s: float = 30.0,
) -> DlqRun:
    """Print (and return) the dead letters ``group`` has not replayed yet, or
    every retained one with ``from_beginning``. Commits nothing."""
    original, dlq_topic = topic_pair(topic)
    run = DlqRun(original, dlq_topic, dry_run=True)

    async def show(batch: list[DeadLetter]) -> None:
        run.records.extend(batch)
        if out is not None:
            for letter in batch:
                print(letter.describe(), file=out)

    consumer = _consumer(bootstrap, group)
    await consumer.start()
    try:
        await _drain(
            consumer,
            dlq_topic,
            limit=limit,
            from_beginning=from_beginning,
            on_batch=show,
            idle_timeout_s=idle_timeout_s,
        )
    finally:
        await consumer.stop()
    return run


async def replay(
    bootstrap: str,
    topic: str,
    *,
    group: str = DEFAULT_GROUP,
    limit: int | None = None,
    dry_run: bool = False,
    idempotent_producer: bool = False,
    out: TextIO | None = None,
    idle_timeout_s: float = 30.0,
) -> DlqRun:
    """Re-produce ``group``'s pending dead letters of ``topic`` to ``topic``.

    Each batch is acknowledged by the broker (acks=all) before its offsets are
    committed. ``dry_run`` prints what would be replayed and changes nothing.
    """
    original, dlq_topic = topic_pair(topic)
    run = DlqRun(original, dlq_topic, dry_run=dry_run)
    consumer = _consumer(bootstrap, group)
    producer: AIOKafkaProducer | None = None
    if not dry_run:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id="pytake-dlq",
            acks="all",
            enable_idempotence=idempotent_producer,
            request_timeout_ms=10_000,
        )

    async def resend(batch: list[DeadLetter]) -> None:
        run.records.extend(batch)
        for letter in batch:
            if out is not None:
                print(("would replay " if dry_run else "replay ") + letter.describe(), file=out)
        if producer is None:
            return
        sent: list[asyncio.Future[Any]] = [
            await producer.send(
                original, value=letter.value, key=letter.key, headers=letter.replay_headers()
            )
            for letter in batch
        ]
        await asyncio.gather(*sent)
        offsets: dict[TopicPartition, int] = {}
        for letter in batch:
            tp = TopicPartition(letter.topic, letter.partition)
            offsets[tp] = max(offsets.get(tp, 0), letter.offset + 1)
        await consumer.commit(offsets)
        run.replayed += len(batch)

    await consumer.start()
    try:
        if producer is not None:
            await producer.start()
        await _drain(
            consumer,
            dlq_topic,
            limit=limit,
            from_beginning=False,
            on_batch=resend,
            idle_timeout_s=idle_timeout_s,
        )
    finally:
        if producer is not None:
            await producer.stop()
        await consumer.stop()
    return run


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytake_common.dlq",
        description="List and replay dead-lettered Kafka records (<topic>.dlq).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("list", "print the pending dead letters and their reasons (changes nothing)"),
        ("replay", "re-produce the pending dead letters to their original topic"),
    ):
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "--topic",
            required=True,
            help="original topic or its .dlq, e.g. pytake.whatsapp.message",
        )
        cmd.add_argument(
            "--group",
            default=DEFAULT_GROUP,
            help=f"consumer group that tracks what was replayed (default {DEFAULT_GROUP})",
        )
        cmd.add_argument("--limit", type=_positive, help="handle at most N records")
        cmd.add_argument("--bootstrap", help="Kafka bootstrap servers (PYTAKE_KAFKA_BOOTSTRAP)")
        if name == "list":
            cmd.add_argument(
                "--all",
                action="store_true",
                help="every retained dead letter, including those already replayed",
            )
        else:
            cmd.add_argument(
                "--dry-run", action="store_true", help="print what would be replayed only"
            )
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or sys.stdout
    settings = DlqSettings()
    bootstrap = args.bootstrap or settings.kafka_bootstrap
    if args.command == "list":
        run = asyncio.run(
            list_dead_letters(
                bootstrap,
                args.topic,
                group=args.group,
                limit=args.limit,
                from_beginning=args.all,
                out=out,
            )
        )
        print(f"{len(run.records)} dead letter(s) in {run.dlq_topic}", file=out)
        return 0
    run = asyncio.run(
        replay(
            bootstrap,
            args.topic,
            group=args.group,
            limit=args.limit,
            dry_run=args.dry_run,
            idempotent_producer=settings.kafka_idempotent_producer,
            out=out,
        )
    )
    if run.dry_run:
        print(f"dry run: {len(run.records)} record(s) would be replayed to {run.topic}", file=out)
    else:
        print(f"replayed {run.replayed} record(s) from {run.dlq_topic} to {run.topic}", file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
