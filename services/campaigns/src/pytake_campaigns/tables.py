"""The campaigns database: campaigns, their frozen recipients, and the replicas they need.

Replicas are built from other services' events only (contacts, whatsapp-gateway,
conversations); nothing here is read from another service's database.
"""

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import new_metadata

metadata = new_metadata()


def _uuid(name: str, *args: Any, **kw: Any) -> Column[Any]:
    return Column(name, UUID(as_uuid=True), *args, **kw)


def _at(name: str, nullable: bool = True, now: bool = False) -> Column[Any]:
    return Column(
        name, DateTime(timezone=True), nullable=nullable, server_default=func.now() if now else None
    )


campaigns = Table(
    "campaigns",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id", nullable=False),
    Column("name", String(200), nullable=False),
    _uuid("number_id", nullable=False),
    # {name, language, parameters, header_parameters, button_parameters}
    Column("template", JSONB, nullable=False),
    # the template's category when the campaign was started (MARKETING needs consent)
    Column("template_category", String(40), nullable=True),
    # {tags_any, tags_all, contact_ids, filters, all_contacts}
    Column("audience", JSONB, nullable=False),
    Column("rate_per_second", Integer, nullable=True),
    # draft | scheduled | running | paused | completed | cancelled
    Column("status", String(20), nullable=False, server_default="draft"),
    Column("pause_reason", String(40), nullable=True),
    _at("scheduled_at"),
    _at("started_at"),
    _at("paused_at"),
    _at("finished_at"),
    Column("recipients_total", Integer, nullable=False, server_default="0"),
    # exclusion reason -> contacts left out when the audience was frozen
    Column("exclusions", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # the pacing token bucket (recipients that may be released now) and when it was filled
    Column("send_credit", Float, nullable=False, server_default="0"),
    _at("credit_at"),
    _uuid("created_by", nullable=True),
    _at("created_at", False, True),
    _at("updated_at", False, True),
    Index("ix_campaigns_org_created", "organization_id", "created_at", "id"),
    Index(
        "ix_campaigns_active",
        "status",
        postgresql_where=text("status IN ('scheduled', 'running')"),
    ),
)

recipients = Table(
    "campaign_recipients",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id", nullable=False),
    _uuid("campaign_id", ForeignKey("campaigns.id", ondelete="CASCADE"), nullable=False),
    # dispatch and listing order (the order the audience was frozen in)
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    _uuid("contact_id", nullable=False),
    _uuid("number_id", nullable=False),
    # queued | dispatched | accepted | sent | delivered | read | replied | failed | cancelled
    Column("status", String(20), nullable=False, server_default="queued"),
    _uuid("message_id", nullable=True),
    _uuid("conversation_id", nullable=True),
    Column("error_code", String(60), nullable=True),
    Column("error_detail", String(500), nullable=True),
    Column("pricing_category", String(40), nullable=True),
    Column("billable", Boolean, nullable=True),
    Column("cost", Numeric(12, 6), nullable=True),
    _at("dispatched_at"),
    _at("accepted_at"),
    _at("sent_at"),
    _at("delivered_at"),
    _at("read_at"),
    _at("replied_at"),
    _at("failed_at"),
    _at("created_at", False, True),
    _at("updated_at", False, True),
    UniqueConstraint("campaign_id", "contact_id", name="uq_campaign_recipients_contact"),
    Index("ix_campaign_recipients_campaign_status_seq", "campaign_id", "status", "seq"),
    Index("ix_campaign_recipients_campaign_seq", "campaign_id", "seq"),
    Index(
        "ix_campaign_recipients_message",
        "message_id",
        postgresql_where=text("message_id IS NOT NULL"),
    ),
    Index(
        "ix_campaign_recipients_conversation",
        "conversation_id",
        postgresql_where=text("conversation_id IS NOT NULL"),
    ),
    Index("ix_campaign_recipients_org_created", "organization_id", "created_at"),
    # what a number has in flight, across its campaigns (the dispatcher's window)
    Index(
        "ix_campaign_recipients_number_in_flight",
        "number_id",
        "dispatched_at",
        postgresql_where=text("status IN ('dispatched', 'accepted')"),
    ),
)

#: Recipients frozen per organization and UTC calendar month (the plan's
#: ``monthly_campaign_recipients``; kept when a finished campaign is deleted).
monthly_recipients = Table(
    "monthly_campaign_recipients",
    metadata,
    _uuid("organization_id", nullable=False),
    Column("month", Date, nullable=False),
    Column("recipients", BigInteger, nullable=False),
    PrimaryKeyConstraint("organization_id", "month"),
)

#: Business-initiated recipients per number (rolling 24 h messaging limit): campaigns' own
#: dispatches and conversations started by a user (``ConversationOpened.started_by``).
initiations = Table(
    "initiations",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    _uuid("organization_id", nullable=False),
    _uuid("number_id", nullable=False),
    _uuid("contact_id", nullable=False),
    _at("at", False, True),
    # the fact (recipient id or conversation id): the same fact counts once
    Column("fact", String(80), nullable=False),
    UniqueConstraint("fact", name="uq_initiations_fact"),
    Index("ix_initiations_number_at", "number_id", "at"),
)

# --- replicas (from events) -----------------------------------------------------------

contact_replicas = Table(
    "contact_replicas",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id", nullable=False),
    Column("wa_id", String(64), nullable=True),
    Column("user_id", String(128), nullable=True),
    Column("name", String(255), nullable=True),
    Column("phone", String(64), nullable=True),
    Column("attributes", JSONB, nullable=True),
    Column("marketing_opt_in", Boolean, nullable=False, server_default="false"),
    Column("blocked", Boolean, nullable=False, server_default="false"),
    _uuid("assignee_id", nullable=True),
    _at("erased_at"),
    # when the contact was created (its created event); null until that event is seen
    _at("created_at"),
    # the newest event time that set each fact (older events arriving late change nothing)
    _at("profile_at"),
    _at("consent_at"),
    _at("blocked_at"),
    _at("assigned_at"),
    Index("ix_contact_replicas_org", "organization_id", "id"),
)

contact_tags = Table(
    "contact_tag_replicas",
    metadata,
    _uuid("organization_id", nullable=False),
    _uuid("contact_id", nullable=False),
    _uuid("tag_id", nullable=False),
    PrimaryKeyConstraint("contact_id", "tag_id"),
    Index("ix_contact_tag_replicas_tag", "tag_id", "contact_id"),
)

tag_replicas = Table(
    "tag_replicas",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id", nullable=False),
    Column("name", String(100), nullable=True),
    _at("deleted_at"),
)

number_replicas = Table(
    "number_replicas",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id", nullable=False),
    Column("waba_id", String(64), nullable=True),
    Column("display_phone_number", String(64), nullable=True),
    # connected | disconnected | removed (or what whatsapp-gateway's events say)
    Column("status", String(20), nullable=False, server_default="connected"),
    Column("messaging_limit_tier", String(40), nullable=True),
    Column("throughput_per_second", Integer, nullable=True),
    _at("version_at"),
)

template_replicas = Table(
    "template_replicas",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id", nullable=False),
    Column("waba_id", String(64), nullable=True),
    _uuid("number_id", nullable=True),
    Column("name", String(512), nullable=False),
    Column("language", String(20), nullable=False),
    Column("category", String(40), nullable=True),
    Column("status", String(40), nullable=False),
    Column("components", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    _at("version_at"),
    Index("ix_template_replicas_lookup", "organization_id", "name", "language"),
)
