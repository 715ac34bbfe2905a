from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.auth_users import users_table
from pytake_common.db import new_metadata

metadata = new_metadata()


def _timestamps() -> list[Column[object]]:
    return [
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    ]


organizations = Table(
    "organizations",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("slug", String(80), nullable=False, unique=True),
    Column("plan", String(40), nullable=False, server_default="free"),
    Column("status", String(20), nullable=False, server_default="active"),
    Column("created_by", UUID(as_uuid=True), nullable=True),
    Column("profile", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("trial_ends_at", DateTime(timezone=True), nullable=True),
    Column("suspended_at", DateTime(timezone=True), nullable=True),
    Column("suspension_reason", String(500), nullable=True),
    *_timestamps(),
)

#: auth's users (from its events): department membership and agent usage.
users = users_table(metadata)

departments = Table(
    "departments",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("name", String(100), nullable=False),
    Column("description", String(500), nullable=True),
    Column("routing_strategy", String(20), nullable=False, server_default="round_robin"),
    Column("max_open_per_agent", Integer, nullable=True),
    *_timestamps(),
    CheckConstraint("routing_strategy IN ('round_robin', 'manual')", name="routing_strategy"),
    Index("uq_departments_org_name", "organization_id", func.lower(text("name")), unique=True),
    Index("ix_departments_org_created", "organization_id", "created_at", "id"),
)

department_members = Table(
    "department_members",
    metadata,
    Column(
        "department_id",
        UUID(as_uuid=True),
        ForeignKey("departments.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("user_id", UUID(as_uuid=True), nullable=False, index=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("department_id", "user_id"),
)

#: One row per counted fact (a contact, a number, a sent message...): the same fact
#: arriving again under another event id finds its row and counts nothing.
#: ``removed_at`` is a tombstone so a late replay of the creation cannot recount it.
usage_facts = Table(
    "usage_facts",
    metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("subject_id", UUID(as_uuid=True), nullable=False),
    Column("period", String(7), nullable=False, server_default=""),
    Column("counted_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("removed_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("organization_id", "kind", "subject_id"),
)

#: Running totals per (organization, metric, period): period "" for current totals,
#: "YYYY-MM" (UTC) for monthly metrics, so a new month starts from zero.
usage_counters = Table(
    "usage_counters",
    metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("metric", String(40), nullable=False),
    Column("period", String(7), nullable=False),
    Column("value", BigInteger, nullable=False, server_default="0"),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("organization_id", "metric", "period"),
)

daily_stats = Table(
    "daily_stats",
    metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("day", Date, nullable=False),
    Column("conversations_opened", Integer, nullable=False, server_default="0"),
    Column("messages_inbound", Integer, nullable=False, server_default="0"),
    Column("messages_outbound", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("organization_id", "day"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("actor_id", UUID(as_uuid=True), nullable=False),
    Column("actor_organization_id", UUID(as_uuid=True), nullable=False),
    Column("action", String(60), nullable=False),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("before", JSONB, nullable=True),
    Column("after", JSONB, nullable=True),
    Column("reason", Text, nullable=True),
    Column("request_id", String(128), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_audit_log_org_id", "organization_id", "id"),
)
