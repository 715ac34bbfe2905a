"""contact book: profile fields, search, tags, attribute definitions, users replica, timeline

Revision ID: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

from pytake_common.db import rls_statements

revision = "0002"
down_revision = "0001"

# unaccent() is only STABLE (its dictionary could change), so it cannot back an index or a
# generated column; this wrapper pins the dictionary and is declared IMMUTABLE.
UNACCENT_FN = """
CREATE OR REPLACE FUNCTION pytake_unaccent(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT public.unaccent('public.unaccent'::regdictionary, $1) $$
"""

SEARCH_EXPR = (
    "lower(pytake_unaccent(coalesce(name, '') || ' ' || coalesce(email, '') || ' ' "
    "|| coalesce(company, '')))"
)
PHONE_DIGITS_EXPR = "regexp_replace(coalesce(phone, ''), '[^0-9]', '', 'g')"


def _ts(name: str, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    default = None if nullable else sa.func.now()
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent SCHEMA public")
    op.execute(UNACCENT_FN)

    op.add_column("contacts", sa.Column("email", sa.String(320)))
    op.add_column("contacts", sa.Column("company", sa.String(256)))
    op.add_column("contacts", sa.Column("job_title", sa.String(256)))
    op.add_column("contacts", sa.Column("notes", sa.Text()))
    op.add_column("contacts", sa.Column("language", sa.String(35)))
    op.add_column("contacts", sa.Column("attributes", JSONB, nullable=False, server_default="{}"))
    op.add_column("contacts", _ts("blocked_at"))
    op.add_column("contacts", sa.Column("blocked_reason", sa.String(500)))
    op.add_column("contacts", sa.Column("blocked_by", UUID(as_uuid=True)))
    op.add_column("contacts", sa.Column("marketing_opt_in", sa.Boolean()))
    op.add_column("contacts", sa.Column("consent_source", sa.String(100)))
    op.add_column("contacts", _ts("consent_changed_at"))
    op.add_column("contacts", sa.Column("assignee_id", UUID(as_uuid=True)))
    op.add_column("contacts", _ts("deleted_at"))
    op.add_column("contacts", _ts("erased_at"))
    op.add_column(
        "contacts", sa.Column("search", sa.Text(), sa.Computed(SEARCH_EXPR, persisted=True))
    )
    op.add_column(
        "contacts",
        sa.Column("phone_digits", sa.Text(), sa.Computed(PHONE_DIGITS_EXPR, persisted=True)),
    )
    op.execute("CREATE INDEX ix_contacts_search_trgm ON contacts USING gin (search gin_trgm_ops)")
    op.execute(
        "CREATE INDEX ix_contacts_phone_digits_trgm ON contacts "
        "USING gin (phone_digits gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX ix_contacts_live_org_created ON contacts (organization_id, created_at, id) "
        "WHERE deleted_at IS NULL"
    )
    op.execute(
        "CREATE INDEX ix_contacts_org_last_interaction ON contacts "
        "(organization_id, last_interaction_at) WHERE deleted_at IS NULL"
    )
    op.execute(
        "CREATE INDEX ix_contacts_org_assignee ON contacts (organization_id, assignee_id) "
        "WHERE assignee_id IS NOT NULL"
    )
    op.drop_index("ix_contacts_organization_id_created_at_id", table_name="contacts")

    op.create_table(
        "tags",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("color", sa.String(7), nullable=False),
        _ts("created_at", False),
        _ts("updated_at", False),
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_tags_organization_id_name ON tags (organization_id, lower(name))"
    )

    op.create_table(
        "contact_tags",
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column(
            "contact_id",
            UUID(as_uuid=True),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "tag_id",
            UUID(as_uuid=True),
            sa.ForeignKey("tags.id", ondelete="CASCADE"),
            nullable=False,
        ),
        _ts("created_at", False),
        sa.PrimaryKeyConstraint("contact_id", "tag_id", name="pk_contact_tags"),
    )
    op.create_index("ix_contact_tags_tag_id", "contact_tags", ["tag_id", "contact_id"])

    op.create_table(
        "attribute_definitions",
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("label", sa.String(128), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("allowed_values", JSONB, nullable=True),
        _ts("created_at", False),
        sa.PrimaryKeyConstraint("organization_id", "key", name="pk_attribute_definitions"),
        sa.CheckConstraint(
            "type IN ('text', 'number', 'date', 'boolean', 'list', 'link')",
            name="ck_attribute_type",
        ),
    )

    op.create_table(
        "users",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("full_name", sa.String(256)),
        sa.Column("role", sa.String(32)),
        sa.Column("is_active", sa.Boolean(), nullable=False, server_default=sa.true()),
        _ts("deleted_at"),
        _ts("updated_at", False),
    )

    op.create_table(
        "contact_interactions",
        sa.Column("id", UUID(as_uuid=True), primary_key=True),
        sa.Column("organization_id", UUID(as_uuid=True), nullable=False),
        sa.Column("contact_id", UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        _ts("occurred_at", False),
        sa.Column("fact_key", sa.String(200), nullable=False),
        sa.Column("data", JSONB, nullable=False, server_default="{}"),
    )
    op.create_index(
        "uq_contact_interactions_fact",
        "contact_interactions",
        ["organization_id", "fact_key"],
        unique=True,
    )
    op.create_index(
        "ix_contact_interactions_timeline",
        "contact_interactions",
        ["organization_id", "contact_id", "occurred_at", "id"],
    )
    for table in ("tags", "contact_tags", "attribute_definitions", "users", "contact_interactions"):
        for stmt in rls_statements(table):
            op.execute(stmt)


def downgrade() -> None:
    for table in ("contact_interactions", "users", "attribute_definitions", "contact_tags", "tags"):
        op.drop_table(table)
    op.create_index(
        "ix_contacts_organization_id_created_at_id",
        "contacts",
        ["organization_id", "created_at", "id"],
    )
    for index in (
        "ix_contacts_org_assignee",
        "ix_contacts_org_last_interaction",
        "ix_contacts_live_org_created",
        "ix_contacts_phone_digits_trgm",
        "ix_contacts_search_trgm",
    ):
        op.drop_index(index, table_name="contacts")
    for column in (
        "phone_digits",
        "search",
        "erased_at",
        "deleted_at",
        "assignee_id",
        "consent_changed_at",
        "consent_source",
        "marketing_opt_in",
        "blocked_by",
        "blocked_reason",
        "blocked_at",
        "attributes",
        "language",
        "notes",
        "job_title",
        "company",
        "email",
    ):
        op.drop_column("contacts", column)
    op.execute("DROP FUNCTION IF EXISTS pytake_unaccent(text)")
