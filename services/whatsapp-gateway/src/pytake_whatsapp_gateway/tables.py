"""Tables of the WhatsApp gateway (SQLAlchemy Core).

Tenant-owned tables carry ``organization_id`` and row-level security;
``webhook_deliveries`` is platform-owned (one delivery can carry several
tenants' numbers) and holds the raw, signature-verified bodies.
"""

from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import new_metadata

metadata = new_metadata()

numbers = Table(
    "numbers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("phone_number_id", String(64), nullable=False, unique=True),
    Column("waba_id", String(64), nullable=False),
    Column("display_phone_number", String(40), nullable=False),
    Column("access_token_enc", Text, nullable=False),
    #: NULL: the number is served by the platform's app secret.
    Column("app_secret_enc", Text, nullable=True),
    Column("verify_token_hash", String(64), nullable=False, index=True),
    Column("status", String(20), nullable=False, server_default="connected"),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("body_sha256", String(64), nullable=False, index=True),
    Column("signature", String(100), nullable=False),
    Column("body", JSONB, nullable=False),
)

inbound_messages = Table(
    "inbound_messages",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),  # ids.message_id_for_wamid
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=False),
    Column("phone_number_id", String(64), nullable=False),
    Column("wamid", String(200), nullable=False),
    Column("contact_id", UUID(as_uuid=True), nullable=False),
    Column("type", String(60), nullable=False),
    Column("delivery_id", UUID(as_uuid=True), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("phone_number_id", "wamid", name="uq_inbound_messages_phone_number_id_wamid"),
)

status_updates = Table(
    "status_updates",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=False),
    Column("phone_number_id", String(64), nullable=False),
    Column("wamid", String(200), nullable=False),
    Column("status", String(40), nullable=False),
    Column("message_id", UUID(as_uuid=True), nullable=True),
    Column("delivery_id", UUID(as_uuid=True), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint(
        "phone_number_id", "wamid", "status", name="uq_status_updates_phone_number_id_wamid_status"
    ),
)

send_log = Table(
    "send_log",
    metadata,
    Column("message_id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=True),
    Column("conversation_id", UUID(as_uuid=True), nullable=True),
    Column("recipient", String(64), nullable=False),
    #: claimed -> sent | failed
    Column("state", String(20), nullable=False, server_default="claimed"),
    Column("wamid", String(200), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error_code", Integer, nullable=True),
    Column("error_title", String(200), nullable=True),
    Column("error_detail", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_send_log_wamid", send_log.c.wamid)

TENANT_TABLES = ("numbers", "inbound_messages", "status_updates", "send_log")
