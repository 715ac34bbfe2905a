"""campaigns, recipients, initiations, the contact/tag/number/template replicas, plus the
outbox/inbox/idempotency tables

Revision ID: 0001_campaigns
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy import Text
from sqlalchemy.dialects import postgresql

from pytake_common.db import rls_statements
from pytake_common.mechanics import create_mechanics_tables, drop_mechanics_tables

revision = "0001_campaigns"
down_revision = None

TENANT_TABLES = (
    "campaigns",
    "campaign_recipients",
    "initiations",
    "monthly_campaign_recipients",
    "contact_replicas",
    "contact_tag_replicas",
    "tag_replicas",
    "number_replicas",
    "template_replicas",
)


def upgrade() -> None:
    create_mechanics_tables(op.get_bind())
    op.create_table(
        "campaigns",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("number_id", sa.UUID(), nullable=False),
        sa.Column("template", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("template_category", sa.String(length=40), nullable=True),
        sa.Column("audience", postgresql.JSONB(astext_type=Text()), nullable=False),
        sa.Column("rate_per_second", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="draft", nullable=False),
        sa.Column("pause_reason", sa.String(length=40), nullable=True),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recipients_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "exclusions",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("send_credit", sa.Float(), server_default="0", nullable=False),
        sa.Column("credit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.UUID(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaigns")),
    )
    op.create_index(
        "ix_campaigns_active",
        "campaigns",
        ["status"],
        unique=False,
        postgresql_where=sa.text("status IN ('scheduled', 'running')"),
    )
    op.create_index(
        "ix_campaigns_org_created",
        "campaigns",
        ["organization_id", "created_at", "id"],
        unique=False,
    )
    op.create_table(
        "contact_replicas",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("wa_id", sa.String(length=64), nullable=True),
        sa.Column("user_id", sa.String(length=128), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("attributes", postgresql.JSONB(astext_type=Text()), nullable=True),
        sa.Column("marketing_opt_in", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("blocked", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("assignee_id", sa.UUID(), nullable=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("profile_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_replicas")),
    )
    op.create_index(
        "ix_contact_replicas_org", "contact_replicas", ["organization_id", "id"], unique=False
    )
    op.create_table(
        "contact_tag_replicas",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("tag_id", sa.UUID(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", "tag_id", name=op.f("pk_contact_tag_replicas")),
    )
    op.create_index(
        "ix_contact_tag_replicas_tag",
        "contact_tag_replicas",
        ["tag_id", "contact_id"],
        unique=False,
    )
    op.create_table(
        "initiations",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("number_id", sa.UUID(), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column(
            "at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("fact", sa.String(length=80), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_initiations")),
        sa.UniqueConstraint("fact", name="uq_initiations_fact"),
    )
    op.create_index("ix_initiations_number_at", "initiations", ["number_id", "at"], unique=False)
    op.create_table(
        "number_replicas",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("waba_id", sa.String(length=64), nullable=True),
        sa.Column("display_phone_number", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), server_default="connected", nullable=False),
        sa.Column("messaging_limit_tier", sa.String(length=40), nullable=True),
        sa.Column("throughput_per_second", sa.Integer(), nullable=True),
        sa.Column("version_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_number_replicas")),
    )
    op.create_table(
        "tag_replicas",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tag_replicas")),
    )
    op.create_table(
        "template_replicas",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("waba_id", sa.String(length=64), nullable=True),
        sa.Column("number_id", sa.UUID(), nullable=True),
        sa.Column("name", sa.String(length=512), nullable=False),
        sa.Column("language", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column(
            "components",
            postgresql.JSONB(astext_type=Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("version_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_template_replicas")),
    )
    op.create_index(
        "ix_template_replicas_lookup",
        "template_replicas",
        ["organization_id", "name", "language"],
        unique=False,
    )
    op.create_table(
        "campaign_recipients",
        sa.Column("id", sa.UUID(), nullable=False),
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("campaign_id", sa.UUID(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("contact_id", sa.UUID(), nullable=False),
        sa.Column("number_id", sa.UUID(), nullable=False),
        sa.Column("status", sa.String(length=20), server_default="queued", nullable=False),
        sa.Column("message_id", sa.UUID(), nullable=True),
        sa.Column("conversation_id", sa.UUID(), nullable=True),
        sa.Column("error_code", sa.String(length=60), nullable=True),
        sa.Column("error_detail", sa.String(length=500), nullable=True),
        sa.Column("pricing_category", sa.String(length=40), nullable=True),
        sa.Column("billable", sa.Boolean(), nullable=True),
        sa.Column("cost", sa.Numeric(precision=12, scale=6), nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("replied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_recipients_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_recipients")),
        sa.UniqueConstraint("campaign_id", "contact_id", name="uq_campaign_recipients_contact"),
    )
    op.create_index(
        "ix_campaign_recipients_campaign_seq",
        "campaign_recipients",
        ["campaign_id", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_campaign_recipients_campaign_status_seq",
        "campaign_recipients",
        ["campaign_id", "status", "seq"],
        unique=False,
    )
    op.create_index(
        "ix_campaign_recipients_conversation",
        "campaign_recipients",
        ["conversation_id"],
        unique=False,
        postgresql_where=sa.text("conversation_id IS NOT NULL"),
    )
    op.create_index(
        "ix_campaign_recipients_message",
        "campaign_recipients",
        ["message_id"],
        unique=False,
        postgresql_where=sa.text("message_id IS NOT NULL"),
    )
    op.create_index(
        "ix_campaign_recipients_number_in_flight",
        "campaign_recipients",
        ["number_id", "dispatched_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('dispatched', 'accepted')"),
    )
    op.create_index(
        "ix_campaign_recipients_org_created",
        "campaign_recipients",
        ["organization_id", "created_at"],
        unique=False,
    )
    op.create_table(
        "monthly_campaign_recipients",
        sa.Column("organization_id", sa.UUID(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("recipients", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "organization_id", "month", name=op.f("pk_monthly_campaign_recipients")
        ),
    )
    for table in TENANT_TABLES:
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in reversed(TENANT_TABLES):
        op.drop_table(table)
    drop_mechanics_tables(op.get_bind())
