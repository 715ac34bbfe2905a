"""The automation database: rules and their runs, timers, settings, and replicas of the
conversations, contacts, tags, departments and organization settings rules look at.

Replicas are built from the owners' events (``replicas.py``); nothing here is read from
another service's database.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from pytake_common.db import new_metadata

metadata = new_metadata()


def _uuid(name: str, nullable: bool = False, **kw: object) -> Column:  # type: ignore[type-arg]
    return Column(name, UUID(as_uuid=True), nullable=nullable, **kw)  # type: ignore[arg-type]


def _at(name: str, nullable: bool = True, now: bool = False) -> Column:  # type: ignore[type-arg]
    return Column(
        name, DateTime(timezone=True), nullable=nullable, server_default=func.now() if now else None
    )


# --- replicas -------------------------------------------------------------------------------

#: tenants' organization settings (timezone, business_hours, holidays, messages, auto-close)
organizations = Table(
    "organizations",
    metadata,
    _uuid("organization_id", primary_key=True),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _at("version_at", False),
)

departments = Table(
    "departments",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id"),
    Column("name", String(256), nullable=False, server_default=""),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    _at("version_at", False),
)

contacts = Table(
    "contacts",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id"),
    Column("name", String(256), nullable=True),
    Column("blocked", Boolean, nullable=False, server_default="false"),
    Column("erased", Boolean, nullable=False, server_default="false"),
    Column("tag_ids", ARRAY(UUID(as_uuid=True)), nullable=False, server_default="{}"),
    Column("attributes", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _at("version_at", False),
    _at("attributes_at"),
)

tags = Table(
    "tags",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id"),
    Column("name", String(64), nullable=False),
    Column("deleted", Boolean, nullable=False, server_default="false"),
    _at("version_at", False),
)

conversations = Table(
    "conversations",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id"),
    _uuid("contact_id"),
    _uuid("number_id", nullable=True),
    Column("status", String(16), nullable=False, server_default="open"),
    Column("priority", String(8), nullable=False, server_default="normal"),
    _uuid("assignee_id", nullable=True),
    _uuid("department_id", nullable=True),
    _at("opened_at"),
    #: opened by a business (an agent's start, a campaign) rather than the customer
    Column("started_by_business", Boolean, nullable=False, server_default="false"),
    Column("inbound_count", Integer, nullable=False, server_default="0"),
    _at("last_inbound_at"),
    #: the last message an agent or API client sent (not automation, not campaigns)
    _at("last_agent_reply_at"),
    _at("last_message_at"),
    _at("updated_at", False, True),
)

# --- rules ----------------------------------------------------------------------------------

rules = Table(
    "rules",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id"),
    Column("name", String(200), nullable=False),
    Column("description", String(1000), nullable=True),
    Column("enabled", Boolean, nullable=False, server_default="true"),
    #: evaluation order within the organization (ascending; ties by created_at)
    Column("position", Integer, nullable=False, server_default="0"),
    Column("trigger", JSONB, nullable=False),
    Column("match", String(3), nullable=False, server_default="all"),
    Column("conditions", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("actions", JSONB, nullable=False),
    Column("stop_processing", Boolean, nullable=False, server_default="false"),
    _uuid("created_by", nullable=True),
    _at("created_at", False, True),
    _at("updated_at", False, True),
    CheckConstraint("match IN ('all', 'any')", name="match"),
    Index("ix_rules_org_position", "organization_id", "position", "created_at"),
)

#: one row per organization: bumped by every rule change (in-memory caches compare it)
rule_sets = Table(
    "rule_sets",
    metadata,
    _uuid("organization_id", primary_key=True),
    Column("version", BigInteger, nullable=False, server_default="0"),
)

#: what automation did (or decided not to do) for one trigger, per source. The unique
#: (organization, source, trigger) key is what makes a redelivered trigger a no-op.
runs = Table(
    "runs",
    metadata,
    _uuid("id", primary_key=True),
    _uuid("organization_id"),
    #: ``rule:<id>``, ``welcome``, ``away``, ``auto_resolve``, ``flow:<id>``, ...
    Column("source_key", String(80), nullable=False),
    _uuid("rule_id", nullable=True),
    _uuid("conversation_id", nullable=True),
    #: the fact that triggered it (an event's message id, a timer's due key)
    Column("trigger_key", String(200), nullable=False),
    Column("trigger", String(40), nullable=False),
    #: ``acted``, ``rate_limited``, ``failed``
    Column("outcome", String(20), nullable=False),
    Column("action_count", Integer, nullable=False, server_default="0"),
    Column("actions", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("detail", String(500), nullable=True),
    _at("created_at", False, True),
    UniqueConstraint("organization_id", "source_key", "trigger_key", name="uq_runs_trigger"),
    Index("ix_runs_rule_created", "rule_id", "created_at", "id"),
    Index("ix_runs_conversation_created", "conversation_id", "created_at"),
)

#: due times polled with ``FOR UPDATE SKIP LOCKED`` (no-reply, unassigned, idle)
timers = Table(
    "timers",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    _uuid("organization_id"),
    _uuid("conversation_id"),
    #: ``no_agent_reply``, ``unassigned``, ``idle``
    Column("kind", String(20), nullable=False),
    Column("source_key", String(80), nullable=False),
    _at("due_at", False),
    #: the fact that armed it (a message time): the run key when it fires
    Column("armed_by", String(200), nullable=False),
    UniqueConstraint("conversation_id", "kind", "source_key", name="uq_timers_slot"),
    Index("ix_timers_due", "due_at"),
)

#: the last automatic message of each kind per conversation (away: once per period)
auto_messages = Table(
    "auto_messages",
    metadata,
    _uuid("conversation_id", primary_key=True),
    Column("kind", String(20), primary_key=True),
    _uuid("organization_id"),
    _at("sent_at", False),
)

#: per-organization automation settings (``/v1/automation/settings``)
settings = Table(
    "settings",
    metadata,
    _uuid("organization_id", primary_key=True),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    _uuid("updated_by", nullable=True),
    _at("updated_at", False, True),
)

TENANT_TABLES = (
    "organizations",
    "departments",
    "contacts",
    "tags",
    "conversations",
    "rules",
    "rule_sets",
    "runs",
    "timers",
    "auto_messages",
    "settings",
)
