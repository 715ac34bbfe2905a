"""aiokafka producer/consumer construction from settings."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from pytake_common.settings import ServiceSettings


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    # Idempotence needs InitProducerId, which the local Tansu broker refuses:
    # it is on against Apache Kafka (prod) and off locally, by setting.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"pytake-{settings.service_name}",
        acks="all",
        enable_idempotence=settings.kafka_idempotent_producer,
        # No linger: the outbox relay, the main producer, sends a whole claimed batch
        # before awaiting its acknowledgements, so its records share a request anyway;
        # a linger only delayed each event by that much on every hop of the platform.
        linger_ms=0,
        request_timeout_ms=10_000,
    )


def make_consumer(settings: ServiceSettings, group_id: str, topics: list[str]) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=f"pytake-{settings.service_name}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=settings.kafka_consumer_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_consumer_heartbeat_ms,
        rebalance_timeout_ms=max(settings.kafka_consumer_session_timeout_ms, 10_000),
        metadata_max_age_ms=5_000,
        # Any record is worth a wake-up (min bytes 1); how long an empty fetch waits
        # bounds the latency of the realtime path (webhook → agent's stream).
        fetch_min_bytes=1,
        fetch_max_wait_ms=settings.kafka_consumer_fetch_max_wait_ms,
    )


async def broker_reachable(bootstrap: str, timeout: float = 1.0) -> bool:
    """Cheap readiness probe: can a TCP connection reach any bootstrap server?"""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        await writer.wait_closed()
        return True
    return False
