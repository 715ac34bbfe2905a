"""Tables every service carries for the messaging mechanics: outbox, inbox, idempotency keys.

Each service's first migration creates them with :func:`create_mechanics_tables`;
they hold no tenant data that needs row-level security beyond the columns shown.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.engine import Connection

from pytake_common.db import NAMING_CONVENTION

mechanics_metadata = MetaData(naming_convention=NAMING_CONVENTION)

outbox = Table(
    "outbox",
    mechanics_metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("event", JSONB, nullable=False),
    Column("headers", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

processed_events = Table(
    "processed_events",
    mechanics_metadata,
    Column("consumer_group", String(200), nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", String(200), nullable=False),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer_group", "event_id"),
)

idempotency_keys = Table(
    "idempotency_keys",
    mechanics_metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("principal_id", UUID(as_uuid=True), nullable=False),
    Column("key", String(200), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response", JSONB, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("organization_id", "principal_id", "key"),
)

MECHANICS_TABLE_NAMES = ("outbox", "processed_events", "idempotency_keys")


def create_mechanics_tables(bind: Connection) -> None:
    mechanics_metadata.create_all(bind)


def drop_mechanics_tables(bind: Connection) -> None:
    mechanics_metadata.drop_all(bind)
