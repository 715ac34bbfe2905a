from sqlalchemy import (
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import new_metadata

metadata = new_metadata()

conversations = Table(
    "conversations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("contact_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=False),
    Column("phone_number_id", String(64), nullable=False),
    Column("wa_id", String(64), nullable=True),
    Column("user_id", String(128), nullable=True),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("last_inbound_at", DateTime(timezone=True), nullable=True),
    Column("last_message_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("status IN ('open', 'pending', 'resolved', 'closed')", name="status"),
)

# At most one active conversation per contact and number: the race-safety of
# "open or reuse" rests on this index (INSERT ... ON CONFLICT DO NOTHING).
Index(
    "uq_conversations_active",
    conversations.c.organization_id,
    conversations.c.contact_id,
    conversations.c.number_id,
    unique=True,
    postgresql_where=text("status IN ('open', 'pending', 'resolved')"),
)
Index(
    "ix_conversations_activity",
    conversations.c.organization_id,
    conversations.c.last_message_at,
    conversations.c.id,
)

messages = Table(
    "messages",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column(
        "conversation_id",
        UUID(as_uuid=True),
        ForeignKey("conversations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("direction", String(8), nullable=False),
    Column("type", String(40), nullable=False),
    Column("text", Text, nullable=True),
    Column("content", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("wamid", String(256), nullable=True),
    #: the WhatsApp id of the message this one quotes (Meta's ``context.id``)
    Column("context_wamid", String(256), nullable=True),
    Column("status", String(16), nullable=False),
    Column("status_at", DateTime(timezone=True), nullable=True),
    Column("error_code", Integer, nullable=True),
    Column("error_detail", Text, nullable=True),
    Column("sent_by", UUID(as_uuid=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("meta_timestamp", DateTime(timezone=True), nullable=True),
    CheckConstraint("direction IN ('inbound', 'outbound')", name="direction"),
    CheckConstraint(
        "status IN ('received', 'pending', 'sent', 'delivered', 'read', 'played', 'failed')",
        name="status",
    ),
)

Index(
    "uq_messages_organization_id_wamid",
    messages.c.organization_id,
    messages.c.wamid,
    unique=True,
    postgresql_where=text("wamid IS NOT NULL"),
)
Index(
    "ix_messages_history",
    messages.c.conversation_id,
    messages.c.created_at,
    messages.c.id,
)
