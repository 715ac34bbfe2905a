"""Flows' tables: drafts, immutable published versions, sessions, allowed HTTP hosts.

On the service's one ``metadata``; kept beside the flows code rather than in
``pytake_automation.tables`` so the module owns its schema.
"""

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_automation.tables import metadata

flows = Table(
    "flows",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("name", String(200), nullable=False),
    Column("description", String(1000), nullable=True),
    #: the draft being edited (structurally valid; publish checks the rest)
    Column("definition", JSONB, nullable=False),
    #: the newest published version (new sessions start on it); null: never published
    Column("published_version", Integer, nullable=True),
    Column("created_by", UUID(as_uuid=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_flows_org_created", "organization_id", "created_at", "id"),
)

#: published versions never change: a session runs the version it started on
flow_versions = Table(
    "flow_versions",
    metadata,
    Column("flow_id", UUID(as_uuid=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("definition", JSONB, nullable=False),
    Column("published_by", UUID(as_uuid=True), nullable=True),
    Column("published_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("flow_id", "version"),
    ForeignKeyConstraint(["flow_id"], ["flows.id"], ondelete="CASCADE"),
)

flow_sessions = Table(
    "flow_sessions",
    metadata,
    Column("id", UUID(as_uuid=True), primary_key=True),
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("conversation_id", UUID(as_uuid=True), nullable=False),
    Column("contact_id", UUID(as_uuid=True), nullable=False),
    Column("number_id", UUID(as_uuid=True), nullable=True),
    Column("flow_id", UUID(as_uuid=True), nullable=False),
    Column("version", Integer, nullable=False),
    #: ``active`` or ``ended``
    Column("status", String(10), nullable=False),
    Column("end_reason", String(40), nullable=True),
    #: the interpreter's SessionState
    Column("state", JSONB, nullable=False),
    #: the fact that started it (a rule run's trigger): a redelivered trigger starts nothing
    #: (unique with the conversation and the flow)
    Column("trigger_key", String(200), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    UniqueConstraint(
        "organization_id",
        "conversation_id",
        "flow_id",
        "trigger_key",
        name="uq_flow_sessions_trigger",
    ),
    #: a conversation has at most one active flow
    Index(
        "uq_flow_sessions_active",
        "conversation_id",
        unique=True,
        postgresql_where=text("status = 'active'"),
    ),
    Index("ix_flow_sessions_flow", "flow_id", "status"),
)

#: hosts a flow's HTTP node may call, per organization
flow_http_hosts = Table(
    "flow_http_hosts",
    metadata,
    Column("organization_id", UUID(as_uuid=True), nullable=False),
    Column("host", String(253), nullable=False),
    PrimaryKeyConstraint("organization_id", "host"),
)

FLOW_TENANT_TABLES = ("flows", "flow_versions", "flow_sessions", "flow_http_hosts")
