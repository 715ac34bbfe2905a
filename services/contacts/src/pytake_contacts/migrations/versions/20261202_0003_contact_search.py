"""contact search behind the RLS barrier: a search table and a definer function

Row-level security keeps non-leakproof operators (LIKE, pg_trgm's ``<%``) from being
used as index conditions on ``contacts`` (they must run after the policy), so trigram
indexes there are never used. The search keys move to ``contact_search`` (kept by a
trigger), whose RLS is enabled but not forced, and the only reader is
``pytake_contact_matches``: SECURITY DEFINER, it runs as the table owner (so indexes
apply) and binds the organization itself from the same per-transaction setting the
policies use — a caller cannot name another tenant.

Revision ID: 0003
"""

from alembic import op

from pytake_common.db import rls_statements

revision = "0003"
down_revision = "0002"

MATCHES_FN = r"""
CREATE OR REPLACE FUNCTION pytake_contact_matches(words text[], patterns text[], digits text)
RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    org uuid := NULLIF(current_setting('pytake.organization_id', true), '')::uuid;
    cond text := '';
    i int;
BEGIN
    IF org IS NULL THEN
        RETURN;
    END IF;
    words := ARRAY(SELECT lower(pytake_unaccent(w)) FROM unnest(words) AS w);
    patterns := ARRAY(SELECT lower(pytake_unaccent(p)) FROM unnest(patterns) AS p);
    -- Values go in as quoted literals (%L), not parameters: the planner then sees
    -- constants and picks the trigram indexes as it does for plain SQL.
    IF digits IS NOT NULL THEN
        cond := cond || format(' AND phone_digits LIKE %L', '%' || digits || '%');
    END IF;
    FOR i IN 1 .. coalesce(array_length(words, 1), 0) LOOP
        cond := cond || format(' AND (search LIKE %L OR %L <%% search)', patterns[i], words[i]);
    END LOOP;
    RETURN QUERY EXECUTE
        format('SELECT contact_id FROM contact_search WHERE organization_id = %L', org) || cond;
END
$fn$
"""

SYNC_FN = """
CREATE OR REPLACE FUNCTION pytake_contact_search_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
BEGIN
    INSERT INTO contact_search (contact_id, organization_id, search, phone_digits)
    VALUES (NEW.id, NEW.organization_id, NEW.search, NEW.phone_digits)
    ON CONFLICT (contact_id) DO UPDATE
        SET search = EXCLUDED.search, phone_digits = EXCLUDED.phone_digits
        WHERE contact_search.search IS DISTINCT FROM EXCLUDED.search
           OR contact_search.phone_digits IS DISTINCT FROM EXCLUDED.phone_digits;
    RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_contacts_search_trgm")
    op.execute("DROP INDEX IF EXISTS ix_contacts_phone_digits_trgm")
    op.execute(
        """
        CREATE TABLE contact_search (
            contact_id uuid PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
            organization_id uuid NOT NULL,
            search text NOT NULL,
            phone_digits text NOT NULL
        )
        """
    )
    op.execute(
        "INSERT INTO contact_search SELECT id, organization_id, search, phone_digits FROM contacts"
    )
    op.execute(
        "CREATE INDEX ix_contact_search_search_trgm ON contact_search USING gin (search gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX ix_contact_search_phone_trgm ON contact_search "
        "USING gin (phone_digits gin_trgm_ops)"
    )
    # Enabled (the app role sees only its tenant) but not forced: the owner, and so the
    # definer functions, read it with indexes.
    for stmt in rls_statements("contact_search"):
        if "FORCE" not in stmt:
            op.execute(stmt)
    op.execute(MATCHES_FN)
    op.execute(SYNC_FN)
    op.execute(
        "CREATE TRIGGER contacts_search_sync AFTER INSERT OR UPDATE OF name, email, company, "
        "phone ON contacts FOR EACH ROW EXECUTE FUNCTION pytake_contact_search_sync()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS contacts_search_sync ON contacts")
    op.execute("DROP FUNCTION IF EXISTS pytake_contact_search_sync()")
    op.execute("DROP FUNCTION IF EXISTS pytake_contact_matches(text[], text[], text)")
    op.execute("DROP TABLE IF EXISTS contact_search")
    op.execute("CREATE INDEX ix_contacts_search_trgm ON contacts USING gin (search gin_trgm_ops)")
    op.execute(
        "CREATE INDEX ix_contacts_phone_digits_trgm ON contacts "
        "USING gin (phone_digits gin_trgm_ops)"
    )
