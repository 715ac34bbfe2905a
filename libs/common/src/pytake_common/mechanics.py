"""Tables every service carries for the messaging mechanics: outbox, inbox, idempotency keys.

Each service's first migration creates them with :func:`create_mechanics_tables`
(tables added later: a migration of each service with :func:`create_mechanics_table`);
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

#: Outbox rows the broker can never take (larger than it accepts, not an event envelope):
#: set aside by the relay with the reason, so they neither block every later event nor
#: vanish. docs/operations.md says how to list them and put them back once the cause is fixed.
outbox_dead = Table(
    "outbox_dead",
    mechanics_metadata,
    Column("id", BigInteger, primary_key=True),  # its outbox id (the order it was staged in)
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("topic", String(200), nullable=False),
    Column("key", String(200), nullable=False),
    Column("event", JSONB, nullable=False),
    Column("headers", JSONB, nullable=False, server_default="{}"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reason", String(1000), nullable=False),
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

MECHANICS_TABLE_NAMES = ("outbox", "outbox_dead", "processed_events", "idempotency_keys")


def create_mechanics_tables(bind: Connection) -> None:
    mechanics_metadata.create_all(bind)


def create_mechanics_table(bind: Connection, name: str) -> None:
    """Create mechanics table ``name`` where an older first migration did not (a database
    made since has it already)."""
    mechanics_metadata.tables[name].create(bind, checkfirst=True)


def drop_mechanics_table(bind: Connection, name: str) -> None:
    mechanics_metadata.tables[name].drop(bind, checkfirst=True)


def drop_mechanics_tables(bind: Connection) -> None:
    mechanics_metadata.drop_all(bind)
