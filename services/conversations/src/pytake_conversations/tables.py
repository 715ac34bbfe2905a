from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
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
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from pytake_common.auth_users import users_table
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
    Column("priority", String(8), nullable=False, server_default="normal"),
    #: a pending conversation wakes (back to open) at this time or on the customer's next message
    Column("snoozed_until", DateTime(timezone=True), nullable=True),
    Column("assignee_id", UUID(as_uuid=True), nullable=True),
    Column("department_id", UUID(as_uuid=True), nullable=True),
    #: the customer's messages no agent has marked read yet
    Column("unread_count", Integer, nullable=False, server_default="0"),
    Column("first_response_at", DateTime(timezone=True), nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    #: the contact's closed conversation on this number this one follows (a closed
    #: conversation stays closed: the next message or start opens a new one linked to it)
    Column(
        "previous_conversation_id",
        UUID(as_uuid=True),
        ForeignKey("conversations.id", ondelete="SET NULL"),
        nullable=True,
    ),
    #: the user who started the conversation (``POST /v1/conversations``); null when the
    #: customer's message opened it
    Column("started_by", UUID(as_uuid=True), nullable=True),
    # SLA of the current cycle, as automation applied it (sla.py)
    Column("sla_policy_id", UUID(as_uuid=True), nullable=True),
    #: when the SLA cycle started (the conversation opened or reopened)
    Column("sla_started_at", DateTime(timezone=True), nullable=True),
    #: when automation decided the stored SLA (orders late events)
    Column("sla_applied_at", DateTime(timezone=True), nullable=True),
    Column("first_response_due_at", DateTime(timezone=True), nullable=True),
    Column("resolution_due_at", DateTime(timezone=True), nullable=True),
    #: the first agent (or API) reply of the SLA cycle
    Column("sla_responded_at", DateTime(timezone=True), nullable=True),
    Column("first_response_breached_at", DateTime(timezone=True), nullable=True),
    Column("resolution_breached_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("status IN ('open', 'pending', 'resolved', 'closed')", name="status"),
    CheckConstraint("priority IN ('low', 'normal', 'high', 'urgent')", name="priority"),
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
# A contact's conversations on a number, of any status (the closed one a new one links to).
Index(
    "ix_conversations_contact_number",
    conversations.c.organization_id,
    conversations.c.contact_id,
    conversations.c.number_id,
    conversations.c.created_at,
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
    #: who ``sent_by`` is: ``user`` (a person), ``api_client`` (an integration's token),
    #: ``automation`` (a rule or flow) or ``campaign``; NULL for inbound messages
    Column("sender_type", String(16), nullable=True),
    #: a campaign's message: its recipient (campaigns' id), at most one message each
    Column("recipient_id", UUID(as_uuid=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("meta_timestamp", DateTime(timezone=True), nullable=True),
    #: inbound only: when an agent marked it read (and asked WhatsApp to show the blue ticks)
    Column("read_at", DateTime(timezone=True), nullable=True),
    CheckConstraint("direction IN ('inbound', 'outbound', 'note')", name="direction"),
    CheckConstraint(
        "sender_type IN ('user', 'api_client', 'automation', 'campaign')", name="sender_type"
    ),
    CheckConstraint(
        "status IN ('received', 'pending', 'sent', 'delivered', 'read', 'played', 'failed', "
        "'internal')",
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
    "uq_messages_organization_id_recipient_id",
    messages.c.organization_id,
    messages.c.recipient_id,
    unique=True,
    postgresql_where=text("recipient_id IS NOT NULL"),
)
Index(
    "ix_messages_history",
    messages.c.conversation_id,
    messages.c.created_at,
    messages.c.id,
)
Index(
    "ix_conversations_status_activity",
    conversations.c.organization_id,
    conversations.c.status,
    conversations.c.last_message_at,
    conversations.c.id,
)
Index(
    "ix_conversations_assignee_activity",
    conversations.c.organization_id,
    conversations.c.assignee_id,
    conversations.c.last_message_at,
    conversations.c.id,
)
Index(
    "ix_conversations_assignee_status_activity",
    conversations.c.organization_id,
    conversations.c.assignee_id,
    conversations.c.status,
    conversations.c.last_message_at,
    conversations.c.id,
)
Index(
    "ix_conversations_department_activity",
    conversations.c.organization_id,
    conversations.c.department_id,
    conversations.c.last_message_at,
    conversations.c.id,
)
#: ``?sla=breached``: the few conversations with a breach, by activity
Index(
    "ix_conversations_sla_breached",
    conversations.c.organization_id,
    conversations.c.last_message_at,
    conversations.c.id,
    postgresql_where=text(
        "first_response_breached_at IS NOT NULL OR resolution_breached_at IS NOT NULL"
    ),
)
#: ``?sla=at_risk``: the running (unmet, unbreached) targets by due time, one index per
#: target (a BitmapOr of both; the page is then sorted by activity)
Index(
    "ix_conversations_sla_first_response_due",
    conversations.c.organization_id,
    conversations.c.first_response_due_at,
    postgresql_where=text(
        "status IN ('open', 'pending') AND sla_responded_at IS NULL"
        " AND first_response_breached_at IS NULL"
    ),
)
Index(
    "ix_conversations_sla_resolution_due",
    conversations.c.organization_id,
    conversations.c.resolution_due_at,
    postgresql_where=text("status IN ('open', 'pending') AND resolution_breached_at IS NULL"),
)
#: the metrics' SLA attainment: conversations whose SLA cycle started in the period
Index(
    "ix_conversations_sla_started",
    conversations.c.organization_id,
    conversations.c.sla_started_at,
    postgresql_where=text("sla_started_at IS NOT NULL"),
)
Index(
    "ix_conversations_snoozed",
    conversations.c.snoozed_until,
    postgresql_where=text("snoozed_until IS NOT NULL"),
)
Index(
    "ix_messages_outbound_month",
    messages.c.organization_id,
    messages.c.created_at,
    postgresql_where=text("direction = 'outbound'"),
)
Index(
    "ix_messages_unread",
    messages.c.conversation_id,
    messages.c.created_at,
    postgresql_where=text("direction = 'inbound' AND read_at IS NULL"),
)

#: What the realtime stream pushes, per organization; ``id`` orders and resumes it.
stream_events = Table(
    "stream_events",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("type", String(80), nullable=False),
    Column("data", JSONB, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index("ix_stream_events_org", stream_events.c.organization_id, stream_events.c.id)
Index("ix_stream_events_created_at", stream_events.c.created_at)

#: What conversations knows of contacts (from contacts' events and inbound messages).
contact_replicas = Table(
    "contact_replicas",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("name", String(256), nullable=True),
    Column("phone", String(32), nullable=True),
    Column("blocked", Boolean, nullable=False, server_default="false"),
    Column("blocked_changed_at", DateTime(timezone=True), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # What starting a conversation needs (outreach_replicas.py):
    Column("wa_id", String(64), nullable=True),
    Column("user_id", String(128), nullable=True),
    #: custom attributes as of ``attributes_at``; null until an event carried them
    Column("attributes", JSONB, nullable=True),
    Column("attributes_at", DateTime(timezone=True), nullable=True),
    Column("marketing_opt_in", Boolean, nullable=False, server_default="false"),
    Column("consent_changed_at", DateTime(timezone=True), nullable=True),
    Column("erased_at", DateTime(timezone=True), nullable=True),
)

#: Campaigns' recipients handled (``recipient.dispatched``): claimed first, so the same
#: recipient under another event id is recognised; then its message or its refusal.
campaign_recipients = Table(
    "campaign_recipients",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("campaign_id", UUID(as_uuid=True), nullable=False),
    Column("message_id", UUID(as_uuid=True), nullable=True),
    #: the problem code the recipient was refused with (null: its message was stored)
    Column("refused_code", String(64), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    #: a recipient whose contact the replica does not have yet: its event's data, and
    #: when it is refused as ``contact_not_found`` if the contact never comes
    Column("parked", JSONB, nullable=True),
    Column("parked_until", DateTime(timezone=True), nullable=True),
    Index(
        "ix_campaign_recipients_parked",
        "parked_until",
        postgresql_where=text("parked_until IS NOT NULL"),
    ),
)

#: The organization's WhatsApp numbers (from whatsapp-gateway's events).
number_replicas = Table(
    "number_replicas",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("phone_number_id", String(64), nullable=True),
    Column("waba_id", String(64), nullable=True),
    Column("display_phone_number", String(32), nullable=True),
    #: connected | disconnected (Meta refused its token) | removed
    Column("status", String(20), nullable=False, server_default="connected"),
    Column("version_at", DateTime(timezone=True), nullable=False),
)
Index("ix_number_replicas_org", number_replicas.c.organization_id)

#: Message templates of the organization's WhatsApp Business Accounts (from
#: whatsapp-gateway's events): review status, category and components.
template_replicas = Table(
    "template_replicas",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=True),
    Column("waba_id", String(64), nullable=False),
    Column("name", String(512), nullable=False),
    Column("language", String(16), nullable=False),
    Column("category", String(32), nullable=True),
    Column("status", String(40), nullable=False),
    Column("components", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("version_at", DateTime(timezone=True), nullable=False),
)
Index(
    "ix_template_replicas_lookup",
    template_replicas.c.organization_id,
    template_replicas.c.waba_id,
    template_replicas.c.name,
    template_replicas.c.language,
)

#: Users of each organization (from auth's events): who may be assigned, and their names.
user_replicas = users_table(metadata, "user_replicas")

#: Departments (from tenants' events) with the routing state of round-robin assignment.
departments = Table(
    "departments",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("name", String(256), nullable=False),
    Column("member_ids", ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"),
    Column("strategy", String(32), nullable=False, server_default="manual"),
    Column("max_open_per_agent", Integer, nullable=True),
    Column("is_default", Boolean, nullable=False, server_default="false"),
    Column("number_ids", ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"),
    Column("last_assignee_id", UUID(as_uuid=True), nullable=True),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    Column("version_at", DateTime(timezone=True), nullable=False),
)
Index("ix_departments_org", departments.c.organization_id)

canned_responses = Table(
    "canned_responses",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("shortcode", String(64), nullable=False),
    Column("title", String(200), nullable=False),
    Column("body", Text, nullable=False),
    Column("created_by", UUID(as_uuid=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
Index(
    "uq_canned_responses_shortcode",
    canned_responses.c.organization_id,
    func.lower(canned_responses.c.shortcode),
    unique=True,
)

#: automation's actions this service applied (``actions_requested``): each at most once
automation_actions = Table(
    "automation_actions",
    metadata,
    Column("action_id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("conversation_id", UUID(as_uuid=True), nullable=False),
    Column("type", String(40), nullable=False),
    #: ``applied``, ``unchanged``, or the problem code that stopped it (``window_closed``...)
    Column("outcome", String(64), nullable=False),
    Column("detail", String(500), nullable=True),
    Column("applied_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
