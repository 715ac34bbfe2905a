"""contact search: the page picked inside the search

A common word (a company, "maria") matches thousands of contacts, and every match was
fetched from ``contacts`` and sorted to keep 51 (the join was about half the query).
``contact_search`` now also keeps ``created_at`` and whether the contact is deleted
(the trigger syncs them), so ``pytake_contact_matches`` can return only the first page
in (created_at, id) order after a keyset when the search is the only filter; with
other filters it still returns every match and the caller filters, orders and limits.

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"

MATCHES_PAGE_FN = r"""
CREATE OR REPLACE FUNCTION pytake_contact_matches(
    words text[], patterns text[], digits text,
    after_at timestamptz, after_id uuid, max_rows int
)
RETURNS SETOF uuid
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    org uuid := NULLIF(current_setting('pytake.organization_id', true), '')::uuid;
    cond text := '';
    tail text := '';
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
    IF max_rows IS NOT NULL THEN
        cond := cond || ' AND NOT deleted';
        IF after_at IS NOT NULL THEN
            cond := cond || format(' AND (created_at, contact_id) > (%L, %L)', after_at, after_id);
        END IF;
        tail := format(' ORDER BY created_at, contact_id LIMIT %s', max_rows);
    END IF;
    RETURN QUERY EXECUTE
        format('SELECT contact_id FROM contact_search WHERE organization_id = %L', org)
        || cond || tail;
END
$fn$
"""

SYNC_FN = """
CREATE OR REPLACE FUNCTION pytake_contact_search_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
BEGIN
    INSERT INTO contact_search
        (contact_id, organization_id, search, phone_digits, created_at, deleted)
    VALUES (NEW.id, NEW.organization_id, NEW.search, NEW.phone_digits, NEW.created_at,
            NEW.deleted_at IS NOT NULL)
    ON CONFLICT (contact_id) DO UPDATE
        SET search = EXCLUDED.search, phone_digits = EXCLUDED.phone_digits,
            created_at = EXCLUDED.created_at, deleted = EXCLUDED.deleted
        WHERE contact_search.search IS DISTINCT FROM EXCLUDED.search
           OR contact_search.phone_digits IS DISTINCT FROM EXCLUDED.phone_digits
           OR contact_search.created_at IS DISTINCT FROM EXCLUDED.created_at
           OR contact_search.deleted IS DISTINCT FROM EXCLUDED.deleted;
    RETURN NULL;
END
$fn$
"""

OLD_SYNC_FN = """
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
    op.execute("LOCK TABLE contacts IN SHARE ROW EXCLUSIVE MODE")
    op.execute("ALTER TABLE contact_search ADD COLUMN created_at timestamptz")
    op.execute("ALTER TABLE contact_search ADD COLUMN deleted boolean NOT NULL DEFAULT false")
    op.execute(
        "UPDATE contact_search s SET created_at = c.created_at, "
        "deleted = c.deleted_at IS NOT NULL FROM contacts c WHERE c.id = s.contact_id"
    )
    op.execute("ALTER TABLE contact_search ALTER COLUMN created_at SET NOT NULL")
    op.execute(SYNC_FN)
    op.execute("DROP TRIGGER contacts_search_sync ON contacts")
    op.execute(
        "CREATE TRIGGER contacts_search_sync AFTER INSERT OR UPDATE OF name, email, company, "
        "phone, created_at, deleted_at ON contacts FOR EACH ROW "
        "EXECUTE FUNCTION pytake_contact_search_sync()"
    )
    op.execute(MATCHES_PAGE_FN)


def downgrade() -> None:
    op.execute(
        "DROP FUNCTION IF EXISTS pytake_contact_matches(text[], text[], text, timestamptz, uuid, int)"
    )
    op.execute("DROP TRIGGER contacts_search_sync ON contacts")
    op.execute(
        "CREATE TRIGGER contacts_search_sync AFTER INSERT OR UPDATE OF name, email, company, "
        "phone ON contacts FOR EACH ROW EXECUTE FUNCTION pytake_contact_search_sync()"
    )
    op.execute(OLD_SYNC_FN)
    op.execute("ALTER TABLE contact_search DROP COLUMN deleted")
    op.execute("ALTER TABLE contact_search DROP COLUMN created_at")
