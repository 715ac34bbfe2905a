"""contact search: only the page function is callable by the application

PostgreSQL grants EXECUTE on every new function to PUBLIC. The search's helper
functions run as their owner (SECURITY DEFINER, so their statements see past
row-level security) and take the organization as an argument or work on the row
a trigger hands them: ``pytake_contact_vocabulary_release(org, ...)`` called
directly could drop words another organization still uses from its vocabulary.
They are meant for the triggers and for ``pytake_contact_page`` only (both run as
the owner, and a trigger's function is not checked for EXECUTE when it fires), so
PUBLIC loses EXECUTE on them. ``pytake_contact_page`` stays callable: it takes the
organization from the transaction's binding, never from its caller.

Revision ID: 0007
"""

from alembic import op

revision = "0007"
down_revision = "0006"

#: SECURITY DEFINER functions of this schema that the application never calls itself
INTERNAL = (
    "pytake_contact_vocabulary_release",
    "pytake_contact_search_sync",
    "pytake_contact_tags_sync",
    "pytake_contact_search_sql",
)

_EACH = """
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname = current_schema() AND p.proname = ANY ({names})
    LOOP
        EXECUTE format('{action} ON FUNCTION %s {whom}', f);
    END LOOP;
END
$$
"""


def _each(action: str, whom: str) -> str:
    names = "ARRAY[" + ", ".join(f"'{name}'" for name in INTERNAL) + "]::name[]"
    return _EACH.replace("{names}", names).replace("{action}", action).replace("{whom}", whom)


def upgrade() -> None:
    op.execute(_each("REVOKE EXECUTE", "FROM PUBLIC"))


def downgrade() -> None:
    op.execute(_each("GRANT EXECUTE", "TO PUBLIC"))
