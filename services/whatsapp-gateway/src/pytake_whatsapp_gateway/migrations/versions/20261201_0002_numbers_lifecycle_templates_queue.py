"""numbers lifecycle (quality, tier, throughput, soft removal), WABA updates, templates,
send queue and pacing, read marks, inbound media

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import rls_statements

revision = "0002"
down_revision = "0001"

NEW_TENANT_TABLES = ("waba_updates", "templates", "send_queue", "read_marks", "media_files")


def _at(name: str, *, nullable: bool = False) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=None if nullable else sa.func.now(),
    )


def upgrade() -> None:
    op.add_column("numbers", sa.Column("quality_rating", sa.String(20), nullable=True))
    op.add_column("numbers", sa.Column("messaging_limit_tier", sa.String(40), nullable=True))
    op.add_column(
        "numbers",
        sa.Column("throughput_per_second", sa.Integer, nullable=False, server_default="80"),
    )
    op.add_column("numbers", _at("removed_at", nullable=True))
    op.drop_constraint("uq_numbers_phone_number_id", "numbers", type_="unique")
    op.create_index(
        "uq_numbers_phone_number_id_active",
        "numbers",
        ["phone_number_id"],
        unique=True,
        postgresql_where=sa.text("removed_at IS NULL"),
    )
    op.create_index("ix_numbers_waba_id", "numbers", ["waba_id"])
    op.create_table(
        "waba_updates",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("waba_id", sa.String(64), nullable=False),
        sa.Column("field", sa.String(60), nullable=False),
        sa.Column("delivery_id", UUID(as_uuid=True), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "templates",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("waba_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("language", sa.String(20), nullable=False),
        sa.Column("category", sa.String(40), nullable=True),
        sa.Column("status", sa.String(40), nullable=False),
        sa.Column("meta_template_id", sa.String(64), nullable=True),
        sa.Column("components", JSONB, nullable=False, server_default="[]"),
        sa.Column("rejected_reason", sa.String(200), nullable=True),
        _at("created_at"),
        _at("updated_at"),
        sa.UniqueConstraint(
            "organization_id",
            "waba_id",
            "name",
            "language",
            name="uq_templates_organization_id_waba_id_name_language",
        ),
    )
    op.create_table(
        "send_queue",
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("message_id", UUID(as_uuid=True), nullable=False, unique=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("number_id", UUID(as_uuid=True), nullable=False),
        sa.Column("recipient_key", sa.String(64), nullable=False),
        sa.Column("request", JSONB, nullable=False),
        _at("not_before"),
        _at("taken_until", nullable=True),
        _at("created_at"),
    )
    op.create_index(
        "ix_send_queue_number_id_recipient_key_seq",
        "send_queue",
        ["number_id", "recipient_key", "seq"],
    )
    op.create_table(
        "send_pace",
        sa.Column("number_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "pair_pace",
        sa.Column("number_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("recipient_key", sa.String(64), primary_key=True),
        sa.Column("tat", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "read_marks",
        sa.Column("phone_number_id", sa.String(64), primary_key=True),
        sa.Column("wamid", sa.String(200), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("number_id", UUID(as_uuid=True), nullable=False),
        _at("created_at"),
    )
    op.create_table(
        "media_files",
        sa.Column("message_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("number_id", UUID(as_uuid=True), nullable=False),
        sa.Column("media_id", sa.String(200), nullable=False),
        sa.Column("mime_type", sa.String(200), nullable=True),
        sa.Column("sha256", sa.String(100), nullable=True),
        sa.Column("state", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("storage_key", sa.String(300), nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        _at("next_attempt_at"),
        _at("created_at"),
        _at("updated_at"),
    )
    op.create_index(
        "ix_media_files_state_next_attempt_at", "media_files", ["state", "next_attempt_at"]
    )
    for table in NEW_TENANT_TABLES:
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in (
        "media_files",
        "read_marks",
        "pair_pace",
        "send_pace",
        "send_queue",
        "templates",
        "waba_updates",
    ):
        op.drop_table(table)
    op.drop_index("ix_numbers_waba_id", table_name="numbers")
    op.drop_index("uq_numbers_phone_number_id_active", table_name="numbers")
    op.execute("DELETE FROM numbers WHERE removed_at IS NOT NULL")
    op.create_unique_constraint("uq_numbers_phone_number_id", "numbers", ["phone_number_id"])
    for column in ("removed_at", "throughput_per_second", "messaging_limit_tier", "quality_rating"):
        op.drop_column("numbers", column)
