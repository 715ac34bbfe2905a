"""The integrations database: webhook endpoints and their delivery queue/log."""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID

from pytake_common.db import new_metadata

metadata = new_metadata()

endpoints = Table(
    "endpoints",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("description", String(500), nullable=True),
    Column("event_types", ARRAY(String(60)), nullable=False),
    Column("status", String(20), nullable=False, server_default="enabled"),
    Column("disabled_reason", String(500), nullable=True),
    Column("disabled_at", DateTime(timezone=True), nullable=True),
    # Fernet tokens (pytake_common.crypto.SecretBox): never the plain secret.
    Column("secret_enc", Text, nullable=False),
    Column("previous_secret_enc", Text, nullable=True),
    Column("previous_secret_expires_at", DateTime(timezone=True), nullable=True),
    # Failures since the last success (auto-disable after a day of them).
    Column("failing_since", DateTime(timezone=True), nullable=True),
    Column("consecutive_failures", Integer, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: One row per (endpoint, public event), plus one per replay: the queue and the log.
deliveries = Table(
    "deliveries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),  # the PyTake-Delivery-Id header
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column(
        "endpoint_id",
        UUID(as_uuid=True),
        ForeignKey("endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("event_id", UUID(as_uuid=True), nullable=False),
    Column("event_type", String(60), nullable=False),
    # Deliveries with the same key reach the endpoint in ``seq`` order (the conversation).
    Column("ordering_key", String(80), nullable=False),
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    Column("body", Text, nullable=False),  # the exact bytes signed and sent
    Column("replay_of", UUID(as_uuid=True), nullable=True),
    Column("status", String(20), nullable=False, server_default="pending"),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("lease_until", DateTime(timezone=True), nullable=True),
    Column("last_attempt_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("response_status", Integer, nullable=True),
    Column("response_body", String(1024), nullable=True),
    Column("latency_ms", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index(
        "uq_deliveries_endpoint_event",
        "endpoint_id",
        "event_id",
        unique=True,
        postgresql_where=text("replay_of IS NULL"),
    ),
    Index(
        "ix_deliveries_pending",
        "endpoint_id",
        "ordering_key",
        "seq",
        postgresql_where=text("status = 'pending'"),
    ),
    # the claim: an endpoint's due pending deliveries, oldest first
    Index(
        "ix_deliveries_due",
        "endpoint_id",
        "next_attempt_at",
        "seq",
        postgresql_where=text("status = 'pending'"),
    ),
    Index("ix_deliveries_endpoint_created", "endpoint_id", "created_at", "id"),
    Index("ix_deliveries_created_at", "created_at"),
)
