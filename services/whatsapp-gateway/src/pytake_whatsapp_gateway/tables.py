"""Tables of the WhatsApp gateway (SQLAlchemy Core).

Tenant-owned tables carry ``organization_id`` and row-level security;
``webhook_deliveries`` is platform-owned (one delivery can carry several
tenants' numbers) and holds the raw, signature-verified bodies.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import new_metadata

metadata = new_metadata()

numbers = Table(
    "numbers",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False, index=True),
    #: Unique among numbers not removed (a removed number can be connected again).
    Column("phone_number_id", String(64), nullable=False),
    Column("waba_id", String(64), nullable=False, index=True),
    Column("display_phone_number", String(40), nullable=False),
    Column("access_token_enc", Text, nullable=False),
    #: NULL: the number is served by the platform's app secret.
    Column("app_secret_enc", Text, nullable=True),
    Column("verify_token_hash", String(64), nullable=False, index=True),
    #: connected | disconnected (Meta refused the token) | removed
    Column("status", String(20), nullable=False, server_default="connected"),
    #: Meta's GREEN | YELLOW | RED (null until Meta tells).
    Column("quality_rating", String(20), nullable=True),
    #: Meta's TIER_250 | TIER_2K | TIER_10K | TIER_100K | TIER_UNLIMITED (null until told).
    Column("messaging_limit_tier", String(40), nullable=True),
    Column("throughput_per_second", Integer, nullable=False, server_default="80"),
    Column("removed_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index(
    "uq_numbers_phone_number_id_active",
    numbers.c.phone_number_id,
    unique=True,
    postgresql_where=numbers.c.removed_at.is_(None),
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
    #: When the Graph call that sent it (its last attempt) left: its bytes written, right
    #: after the pacer found it on time for its throughput slot (sending/pacing.py).
    Column("departed_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_send_log_wamid", send_log.c.wamid)

#: WABA-level changes already applied (template status, quality, account), per tenant.
waba_updates = Table(
    "waba_updates",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),  # uuid5 of the change's content
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("waba_id", String(64), nullable=False),
    Column("field", String(60), nullable=False),
    Column("delivery_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

templates = Table(
    "templates",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),  # ids.template_id
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("waba_id", String(64), nullable=False),
    Column("name", String(512), nullable=False),
    Column("language", String(20), nullable=False),
    Column("category", String(40), nullable=True),
    #: Meta's APPROVED | PENDING | REJECTED | PAUSED | DISABLED | ...
    Column("status", String(40), nullable=False),
    Column("meta_template_id", String(64), nullable=True),
    Column("components", JSONB, nullable=False, server_default="[]"),
    Column("rejected_reason", String(200), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint(
        "organization_id",
        "waba_id",
        "name",
        "language",
        name="uq_templates_organization_id_waba_id_name_language",
    ),
)

#: Send requests waiting for the dispatcher (deleted once their outcome is recorded).
send_queue = Table(
    "send_queue",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=True),
    Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=False),
    #: sha256 of the recipient: per-recipient order and pacing without the phone number.
    Column("recipient_key", String(64), nullable=False),
    Column("request", JSONB, nullable=False),
    #: 0 interactive (agents, API clients), 1 automation, 2 campaign: a number's lower
    #: numbers go first (sending/dispatcher.py)
    Column("priority", SmallInteger, nullable=False, server_default="0"),
    Column("not_before", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: A dispatcher's lease: another one may take the row only after it expired.
    Column("taken_until", DateTime(timezone=True), nullable=True),
    #: When the taken request's throughput slot begins (set with the slot, in the claim's
    #: transaction): a background request holds room in the number's schedule until then.
    Column("slot_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index(
    "ix_send_queue_number_id_recipient_key_seq",
    send_queue.c.number_id,
    send_queue.c.recipient_key,
    send_queue.c.seq,
)
Index(
    "ix_send_queue_background",
    send_queue.c.number_id,
    send_queue.c.priority,
    send_queue.c.seq,
    postgresql_where=text("priority > 0"),
)
Index(
    "ix_send_queue_background_taken",
    send_queue.c.number_id,
    postgresql_where=text("priority > 0 AND taken_until IS NOT NULL"),
)

#: Per-number pacing (GCRA): the theoretical arrival time of the next send.
send_pace = Table(
    "send_pace",
    metadata,
    Column("number_id", UUID(as_uuid=True), primary_key=True),
    Column("tat", DateTime(timezone=True), nullable=False),
)

#: Per-(number, recipient) pacing (Meta's pair rate), recipient hashed.
pair_pace = Table(
    "pair_pace",
    metadata,
    Column("number_id", UUID(as_uuid=True), primary_key=True),
    Column("recipient_key", String(64), primary_key=True),
    Column("tat", DateTime(timezone=True), nullable=False),
)

#: Mark-as-read calls made (once per customer message).
read_marks = Table(
    "read_marks",
    metadata,
    Column("phone_number_id", String(64), primary_key=True),
    Column("wamid", String(200), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

#: Media of inbound messages: fetched from Meta after intake by the media worker.
media_files = Table(
    "media_files",
    metadata,
    Column("message_id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=False),
    Column("media_id", String(200), nullable=False),
    Column("mime_type", String(200), nullable=True),
    Column("sha256", String(100), nullable=True),
    #: pending -> stored | failed
    Column("state", String(20), nullable=False, server_default="pending"),
    Column("storage_key", String(300), nullable=True),
    Column("size_bytes", BigInteger, nullable=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("error", Text, nullable=True),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_media_files_state_next_attempt_at", media_files.c.state, media_files.c.next_attempt_at)

TENANT_TABLES = (
    "numbers",
    "inbound_messages",
    "status_updates",
    "send_log",
    "waba_updates",
    "templates",
    "send_queue",
    "read_marks",
    "media_files",
)
