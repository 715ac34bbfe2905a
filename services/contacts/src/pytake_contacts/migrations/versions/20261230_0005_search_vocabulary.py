"""contact search by words: a per-organization vocabulary, ranked pages, filters inside

Trigram matching on whole ``name email company`` strings rechecked 15-23 thousand rows
for a common name in a 200,000-contact organization. Search now works like the
spelling dictionary of the pg_trgm documentation:

* ``pytake_search_words`` splits name, e-mail and company into distinct accent-free,
  lower-cased words (on spaces and punctuation: ``ana.souza@acme.io`` gives ``ana``,
  ``souza``, ``acme``, ``io``);
* ``contact_vocabulary`` holds each organization's distinct words (small next to the
  contacts; trigram- and prefix-indexed) and is where typos, prefixes and substrings are
  resolved: each query word becomes the few vocabulary words it matches, classed exact,
  prefix or fuzzy;
* ``contact_search.words`` (GIN) then finds the contacts holding those exact words, and
  the rank of a contact is the sum over query words of 0 (exact), 1 (prefix), 2 (fuzzy).

``contact_search`` also carries the list filters (blocked, opted in, assignee, last
interaction), so ``pytake_contact_page`` returns the finished page — filtered, ordered by
(rank, created_at, id) after a keyset, limited — without touching ``contacts``. Like
before, it is SECURITY DEFINER (indexes usable behind RLS) and reads the organization
from the transaction's tenant setting itself: a caller cannot name another tenant.

The vocabulary is kept by the contacts trigger. Its statements touch a row or a few by
key, and plpgsql keeps their plans for the session: planned while a table looked empty
(a new database, a first import), they would scan it sequentially for every row of a
bulk insert — quadratic. ``enable_seqscan = off`` on the trigger functions keeps them
on the indexes whatever the statistics said. Adding a word takes a KEY SHARE lock on
its row (or inserts it), so concurrent writers of common words never wait for each
other; a word leaves the vocabulary when no contact of the organization has it any more
(edit, erasure, hard delete): the remover locks the row FOR UPDATE, which waits for
adders to commit, then re-checks ``contact_search`` in a new snapshot.

Revision ID: 0005
"""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

from pytake_common.db import rls_statements

revision = "0005"
down_revision = "0004"

WORDS_FN = r"""
CREATE OR REPLACE FUNCTION pytake_search_words(VARIADIC parts text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT coalesce(array_agg(DISTINCT w COLLATE "C" ORDER BY w COLLATE "C"), '{}')
    FROM regexp_split_to_table(
        lower(pytake_unaccent(array_to_string(parts, ' '))), '[[:space:][:punct:]]+'
    ) AS w
    WHERE w <> '' AND length(w) <= 64
$fn$
"""

#: Every six-digit run of a phone's digits. Digit trigrams are unselective (a thousand
#: of them share 300,000 phones), six-digit runs are not: a GIN index on them finds a
#: fragment of six digits or more among few candidates (contact_search.phone_grams).
GRAMS_FN = r"""
CREATE OR REPLACE FUNCTION pytake_digit_grams(digits text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT
AS $fn$
BEGIN
    RETURN ARRAY(SELECT DISTINCT substr(digits, i, 6) FROM generate_series(1, length(digits) - 5) AS i);
END
$fn$
"""

RELEASE_FN = r"""
CREATE OR REPLACE FUNCTION pytake_contact_vocabulary_release(org uuid, gone text[], leaving uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off
AS $fn$
BEGIN
    -- FOR UPDATE waits for transactions that just added one of these words (KEY SHARE);
    -- the DELETE below then runs in a new snapshot that sees their contacts.
    PERFORM 1 FROM contact_vocabulary
    WHERE organization_id = org AND word = ANY (gone) ORDER BY word FOR UPDATE;
    DELETE FROM contact_vocabulary v
    WHERE v.organization_id = org AND v.word = ANY (gone)
      AND NOT EXISTS (
          SELECT 1 FROM contact_search s
          WHERE s.organization_id = org AND s.words @> ARRAY[v.word::text]
            AND s.contact_id IS DISTINCT FROM leaving
      );
END
$fn$
"""

SYNC_FN = r"""
CREATE OR REPLACE FUNCTION pytake_contact_search_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off
AS $fn$
DECLARE
    new_words text[];
    old_words text[] := '{}';
    added text[] := '{}';
    gone text[] := '{}';
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pytake_contact_vocabulary_release(
            OLD.organization_id, pytake_search_words(OLD.name, OLD.email, OLD.company), OLD.id);
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' OR (OLD.name, OLD.email, OLD.company)
            IS DISTINCT FROM (NEW.name, NEW.email, NEW.company) THEN
        new_words := pytake_search_words(NEW.name, NEW.email, NEW.company);
        IF TG_OP = 'UPDATE' THEN
            old_words := pytake_search_words(OLD.name, OLD.email, OLD.company);
        END IF;
        added := ARRAY(SELECT unnest(new_words) EXCEPT SELECT unnest(old_words) ORDER BY 1);
        gone := ARRAY(SELECT unnest(old_words) EXCEPT SELECT unnest(new_words) ORDER BY 1);
    END IF;
    IF cardinality(added) > 0 THEN
        -- Lock the words that exist (shared: adders never wait for each other), then
        -- insert the missing ones; a concurrent release waits for this transaction.
        PERFORM 1 FROM contact_vocabulary
        WHERE organization_id = NEW.organization_id AND word = ANY (added)
        ORDER BY word FOR KEY SHARE;
        INSERT INTO contact_vocabulary (organization_id, word)
        SELECT NEW.organization_id, w FROM unnest(added) AS w ORDER BY w
        ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO contact_search (contact_id, organization_id, created_at, deleted, blocked,
                                    opted_in, assignee_id, last_interaction_at, phone_digits,
                                    phone_grams, words)
        VALUES (NEW.id, NEW.organization_id, NEW.created_at, NEW.deleted_at IS NOT NULL,
                NEW.blocked_at IS NOT NULL, NEW.marketing_opt_in IS TRUE, NEW.assignee_id,
                NEW.last_interaction_at, NEW.phone_digits, pytake_digit_grams(NEW.phone_digits),
                new_words);
    ELSE  -- every contact has its row (this trigger, migration 0005); HOT unless words change
        UPDATE contact_search SET
            created_at = NEW.created_at,
            deleted = NEW.deleted_at IS NOT NULL,
            blocked = NEW.blocked_at IS NOT NULL,
            opted_in = NEW.marketing_opt_in IS TRUE,
            assignee_id = NEW.assignee_id,
            last_interaction_at = NEW.last_interaction_at,
            phone_digits = NEW.phone_digits,
            phone_grams = CASE WHEN phone_digits IS DISTINCT FROM NEW.phone_digits
                               THEN pytake_digit_grams(NEW.phone_digits) ELSE phone_grams END,
            words = coalesce(new_words, words)
        WHERE contact_id = NEW.id
          AND (created_at, deleted, blocked, opted_in, assignee_id, last_interaction_at,
               phone_digits, words)
              IS DISTINCT FROM
              (NEW.created_at, NEW.deleted_at IS NOT NULL, NEW.blocked_at IS NOT NULL,
               NEW.marketing_opt_in IS TRUE, NEW.assignee_id, NEW.last_interaction_at,
               NEW.phone_digits, coalesce(new_words, words));
    END IF;
    IF cardinality(gone) > 0 THEN
        PERFORM pytake_contact_vocabulary_release(NEW.organization_id, gone, NULL);
    END IF;
    RETURN NULL;
END
$fn$
"""

#: the parameters of pytake_contact_search_sql and pytake_contact_page
PARAMS = """
    q text, digits text, tag_id uuid, assignee_id uuid, unassigned boolean,
    blocked boolean, opted_in boolean, created_from timestamptz, created_to timestamptz,
    interacted_from timestamptz, interacted_to timestamptz,
    after_rank int, after_at timestamptz, after_id uuid, max_rows int
"""

#: The page query for a search (and any filters), as SQL with the organization, the
#: matched vocabulary words and every value inlined as literals (%L): the planner sees
#: constants, so it can use the prefix and trigram indexes and the array statistics.
#: NULL when there is no tenant bound; a query that can match nothing when a word has no
#: match in the vocabulary.
SEARCH_SQL_FN = r"""
CREATE OR REPLACE FUNCTION pytake_contact_search_sql(PARAMS)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET pg_trgm.word_similarity_threshold = 0.5
AS $fn$
DECLARE
    org uuid := NULLIF(current_setting('pytake.organization_id', true), '')::uuid;
    nothing constant text := 'SELECT NULL::uuid, NULL::int WHERE false';
    -- at most this many vocabulary words per query word and kind (prefix, fuzzy)
    per_word constant int := 50;
    -- rows of the (created_at, id) order tried first for several words in one rank
    probe_rows constant int := 1000;
    lim int := coalesce(max_rows, 50);
    words_matched int := 0;
    keyset text := '';
    page text;
    cond text := '';
    rank text := '';
    w text;
    pattern text;
    upper text;
    exact text[];
    prefix text[];
    fuzzy text[];
    terms text[];
BEGIN
    IF org IS NULL THEN
        RETURN NULL;
    END IF;
    IF digits IS NOT NULL THEN
        IF length(digits) >= 6 THEN  -- the first and last six digits: few candidates
            cond := cond || format(
                ' AND s.phone_grams @> %L::text[] AND strpos(s.phone_digits, %L) > 0',
                ARRAY[left(digits, 6), right(digits, 6)], digits);
        ELSE
            cond := cond || format(' AND s.phone_digits LIKE %L', '%' || digits || '%');
        END IF;
    END IF;
    IF q IS NOT NULL THEN
        terms := (pytake_search_words(q))[1:8];
        IF cardinality(terms) = 0 THEN
            RETURN nothing;
        END IF;
        FOREACH w IN ARRAY terms LOOP
            -- Static statements (plans kept for the session); a C-collated range is the
            -- prefix test, so the btree indexes serve it with a parameter.
            upper := w || chr(1114111);
            exact := ARRAY(SELECT v.word::text FROM contact_vocabulary v
                           WHERE v.organization_id = org AND v.word = w);
            IF w ~ '[0-9]' THEN
                prefix := ARRAY(SELECT v.word::text FROM contact_vocabulary v
                                WHERE v.organization_id = org AND v.word > w AND v.word < upper
                                ORDER BY v.word LIMIT per_word);
                fuzzy := '{}';
            ELSE
                prefix := ARRAY(SELECT v.word::text FROM contact_vocabulary v
                                WHERE v.organization_id = org AND v.word !~ '[0-9]'
                                  AND v.word > w AND v.word < upper
                                ORDER BY length(v.word), v.word LIMIT per_word);
                fuzzy := '{}';
                -- Typos and substrings only for a word no contact has as such (a known
                -- word is what was meant), of three letters or more; the closest first.
                IF cardinality(exact) = 0 AND length(w) >= 3 THEN
                    pattern := '%' || replace(replace(replace(w, '\', '\\'), '%', '\%'), '_', '\_')
                               || '%';
                    fuzzy := ARRAY(
                        SELECT v.word::text FROM contact_vocabulary v
                        WHERE v.organization_id = org AND v.word !~ '[0-9]'
                          AND NOT (v.word >= w AND v.word < upper)
                          AND (v.word LIKE pattern
                               OR (w <% v.word AND length(v.word) <= length(w) + 2))
                        ORDER BY word_similarity(w, v.word) DESC, v.word LIMIT per_word);
                END IF;
            END IF;
            IF cardinality(exact) + cardinality(prefix) + cardinality(fuzzy) = 0 THEN
                RETURN nothing;
            END IF;
            cond := cond || format(' AND s.words && %L::text[]', exact || prefix || fuzzy);
            words_matched := words_matched + 1;
            -- A word matched only one way adds a constant: left out of the rank.
            IF (cardinality(exact) > 0)::int + (cardinality(prefix) > 0)::int
                    + (cardinality(fuzzy) > 0)::int > 1 THEN
                rank := rank || ' + CASE'
                    || CASE WHEN cardinality(exact) > 0
                            THEN format(' WHEN s.words && %L::text[] THEN 0', exact) ELSE '' END
                    || CASE WHEN cardinality(prefix) > 0 AND cardinality(fuzzy) > 0
                            THEN format(' WHEN s.words && %L::text[] THEN 1', prefix) ELSE '' END
                    || CASE WHEN cardinality(fuzzy) = 0 THEN ' ELSE 1 END' ELSE ' ELSE 2 END' END;
            ELSE
                rank := rank || CASE WHEN cardinality(prefix) > 0 THEN ' + 1'
                                     WHEN cardinality(fuzzy) > 0 THEN ' + 2' ELSE '' END;
            END IF;
        END LOOP;
    END IF;
    rank := '0' || rank;
    IF tag_id IS NOT NULL THEN
        cond := cond || format(
            ' AND s.contact_id IN (SELECT t.contact_id FROM contact_tags t'
            ' WHERE t.tag_id = %L AND t.organization_id = %L)', tag_id, org);
    END IF;
    IF assignee_id IS NOT NULL THEN
        cond := cond || format(' AND s.assignee_id = %L', assignee_id);
    END IF;
    IF unassigned IS NOT NULL THEN
        cond := cond || CASE WHEN unassigned THEN ' AND s.assignee_id IS NULL'
                             ELSE ' AND s.assignee_id IS NOT NULL' END;
    END IF;
    IF blocked IS NOT NULL THEN
        cond := cond || CASE WHEN blocked THEN ' AND s.blocked' ELSE ' AND NOT s.blocked' END;
    END IF;
    IF opted_in IS NOT NULL THEN
        cond := cond || CASE WHEN opted_in THEN ' AND s.opted_in' ELSE ' AND NOT s.opted_in' END;
    END IF;
    IF created_from IS NOT NULL THEN
        cond := cond || format(' AND s.created_at >= %L', created_from);
    END IF;
    IF created_to IS NOT NULL THEN
        cond := cond || format(' AND s.created_at < %L', created_to);
    END IF;
    IF interacted_from IS NOT NULL THEN
        cond := cond || format(' AND s.last_interaction_at >= %L', interacted_from);
    END IF;
    IF interacted_to IS NOT NULL THEN
        cond := cond || format(' AND s.last_interaction_at < %L', interacted_to);
    END IF;
    IF after_at IS NOT NULL THEN
        IF rank = '0' THEN  -- one rank: the keyset is (created_at, id), as the index
            keyset := CASE WHEN coalesce(after_rank, 0) > 0 THEN ' AND false' ELSE
                format(' AND (s.created_at, s.contact_id) > (%L, %L)', after_at, after_id) END;
        ELSE
            keyset := format(' AND (%s, s.created_at, s.contact_id) > (%s, %L, %L)',
                rank, coalesce(after_rank, 0), after_at, after_id);
        END IF;
    END IF;
    page := format(
        'SELECT s.contact_id, (%s)::int AS rank FROM contact_search s'
        ' WHERE s.organization_id = %L AND NOT s.deleted%s%s'
        ' ORDER BY 2, s.created_at, s.contact_id LIMIT %s',
        rank, org, cond, keyset, lim);
    IF rank <> '0' OR words_matched < 2 THEN
        RETURN page;
    END IF;
    -- Several words in one rank: the planner takes them as independent and may expect a
    -- handful of rows where they go together in thousands ('padaria avila': 13,000
    -- contacts, read through the bitmap and sorted). The next rows in (created_at, id)
    -- order are tried first; only when they hold too few matches does the full query run.
    RETURN format(
        'WITH probe AS MATERIALIZED (SELECT s.contact_id, 0 AS rank FROM ('
        ' SELECT * FROM contact_search s WHERE s.organization_id = %L AND NOT s.deleted%s'
        ' ORDER BY s.created_at, s.contact_id LIMIT %s) s WHERE true%s'
        ' ORDER BY s.created_at, s.contact_id LIMIT %s)'
        ' SELECT * FROM probe WHERE (SELECT count(*) FROM probe) >= %s'
        ' UNION ALL SELECT * FROM (%s) f WHERE (SELECT count(*) FROM probe) < %s',
        org, keyset, probe_rows, cond, lim, lim, page, lim);
END
$fn$
""".replace("PARAMS", PARAMS)

PAGE_FN = r"""
CREATE OR REPLACE FUNCTION pytake_contact_page(PARAMS)
RETURNS TABLE (contact_id uuid, rank int)
LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 50
SET search_path = public, pg_temp
SET pg_trgm.word_similarity_threshold = 0.5
SET max_parallel_workers_per_gather = 0
AS $fn$
DECLARE
    page_sql text := pytake_contact_search_sql(
        q, digits, tag_id, assignee_id, unassigned, blocked, opted_in, created_from,
        created_to, interacted_from, interacted_to, after_rank, after_at, after_id, max_rows);
BEGIN
    IF page_sql IS NOT NULL THEN
        RETURN QUERY EXECUTE page_sql;
    END IF;
END
$fn$
""".replace("PARAMS", PARAMS)

SIGNATURE = (
    "text, text, uuid, uuid, boolean, boolean, boolean, timestamptz, timestamptz, "
    "timestamptz, timestamptz, int, timestamptz, uuid, int"
)

#: GIN indexes gather new entries in a pending list that every search reads in full
#: (up to 4 MB by default: after a 100,000-row import, EXPLAIN showed 425 buffers to
#: find one phone); a small list keeps inserts batched and searches short.
GIN_OPTIONS = " WITH (gin_pending_list_limit = 256)"

TRIGGER_COLUMNS = (
    "name, email, company, phone, created_at, deleted_at, blocked_at, marketing_opt_in, "
    "assignee_id, last_interaction_at"
)


def _revision_0004() -> ModuleType:
    """Migration 0004 (its trigger and search function come back on downgrade)."""
    path = Path(__file__).with_name("20261229_0004_search_page.py")
    spec = importlib.util.spec_from_file_location("pytake_contacts_migration_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _isolate(table: str) -> None:
    """Tenant RLS enabled (the app role sees only its tenant) but not forced."""
    for stmt in rls_statements(table):
        if "FORCE" not in stmt:
            op.execute(stmt)


def upgrade() -> None:
    op.execute("LOCK TABLE contacts IN SHARE ROW EXCLUSIVE MODE")
    op.execute("DROP TRIGGER contacts_search_sync ON contacts")
    op.execute("DROP FUNCTION pytake_contact_matches(text[], text[], text, timestamptz, uuid, int)")
    op.execute("DROP FUNCTION IF EXISTS pytake_contact_matches(text[], text[], text)")
    op.execute("DROP TABLE contact_search")
    op.execute(WORDS_FN)
    op.execute(GRAMS_FN)
    op.execute(
        """
        CREATE TABLE contact_search (
            contact_id uuid PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
            organization_id uuid NOT NULL,
            created_at timestamptz NOT NULL,
            deleted boolean NOT NULL,
            blocked boolean NOT NULL,
            opted_in boolean NOT NULL,
            assignee_id uuid,
            last_interaction_at timestamptz,
            phone_digits text NOT NULL,
            phone_grams text[] NOT NULL,
            words text[] NOT NULL
        ) WITH (fillfactor = 90)
        """
    )
    op.execute(
        """
        INSERT INTO contact_search
        SELECT id, organization_id, created_at, deleted_at IS NOT NULL, blocked_at IS NOT NULL,
               marketing_opt_in IS TRUE, assignee_id, last_interaction_at, phone_digits,
               pytake_digit_grams(phone_digits), pytake_search_words(name, email, company)
        FROM contacts
        """
    )
    op.execute(
        """
        CREATE TABLE contact_vocabulary (
            organization_id uuid NOT NULL,
            word text COLLATE "C" NOT NULL,
            PRIMARY KEY (organization_id, word)
        )
        """
    )
    op.execute(
        "INSERT INTO contact_vocabulary SELECT DISTINCT organization_id, unnest(words) "
        "FROM contact_search"
    )
    op.execute(
        "CREATE INDEX ix_contact_search_words ON contact_search USING gin (words)" + GIN_OPTIONS
    )
    op.execute(
        "CREATE INDEX ix_contact_search_phone_trgm ON contact_search "
        "USING gin (phone_digits gin_trgm_ops)" + GIN_OPTIONS
    )
    op.execute(
        "CREATE INDEX ix_contact_search_phone_grams ON contact_search USING gin (phone_grams)"
        + GIN_OPTIONS
    )
    op.execute(
        "CREATE INDEX ix_contact_search_live_created ON contact_search "
        "(organization_id, created_at, contact_id) WHERE NOT deleted"
    )
    op.execute(
        "CREATE INDEX ix_contact_vocabulary_letters ON contact_vocabulary "
        "(organization_id, word) WHERE word !~ '[0-9]'"
    )
    op.execute(
        "CREATE INDEX ix_contact_vocabulary_trgm ON contact_vocabulary "
        "USING gin (word gin_trgm_ops)" + GIN_OPTIONS + " WHERE word !~ '[0-9]'"
    )
    # Enabled (the app role sees only its tenant) but not forced: the owner, and so the
    # definer functions, read them with indexes.
    for table in ("contact_search", "contact_vocabulary"):
        _isolate(table)
    op.execute(RELEASE_FN)
    op.execute(SYNC_FN)
    op.execute(SEARCH_SQL_FN)
    op.execute(PAGE_FN)
    op.execute(
        f"CREATE TRIGGER contacts_search_sync AFTER INSERT OR UPDATE OF {TRIGGER_COLUMNS} "
        "ON contacts FOR EACH ROW EXECUTE FUNCTION pytake_contact_search_sync()"
    )
    op.execute(
        "CREATE TRIGGER contacts_search_forget AFTER DELETE ON contacts "
        "FOR EACH ROW EXECUTE FUNCTION pytake_contact_search_sync()"
    )
    op.execute("ANALYZE contact_search")
    op.execute("ANALYZE contact_vocabulary")


def downgrade() -> None:
    previous = _revision_0004()
    op.execute("DROP TRIGGER contacts_search_forget ON contacts")
    op.execute("DROP TRIGGER contacts_search_sync ON contacts")
    op.execute(f"DROP FUNCTION pytake_contact_page({SIGNATURE})")
    op.execute(f"DROP FUNCTION pytake_contact_search_sql({SIGNATURE})")
    op.execute("DROP FUNCTION pytake_contact_search_sync()")
    op.execute("DROP FUNCTION pytake_contact_vocabulary_release(uuid, text[], uuid)")
    op.execute("DROP TABLE contact_vocabulary")
    op.execute("DROP TABLE contact_search")
    op.execute("DROP FUNCTION pytake_search_words(text[])")
    op.execute("DROP FUNCTION pytake_digit_grams(text)")
    op.execute(
        """
        CREATE TABLE contact_search (
            contact_id uuid PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
            organization_id uuid NOT NULL,
            search text NOT NULL,
            phone_digits text NOT NULL,
            created_at timestamptz NOT NULL,
            deleted boolean NOT NULL DEFAULT false
        )
        """
    )
    op.execute(
        "INSERT INTO contact_search SELECT id, organization_id, search, phone_digits, "
        "created_at, deleted_at IS NOT NULL FROM contacts"
    )
    op.execute(
        "CREATE INDEX ix_contact_search_search_trgm ON contact_search USING gin (search gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX ix_contact_search_phone_trgm ON contact_search "
        "USING gin (phone_digits gin_trgm_ops)"
    )
    _isolate("contact_search")
    op.execute(previous.SYNC_FN)
    op.execute(previous.MATCHES_PAGE_FN)
    op.execute(
        "CREATE TRIGGER contacts_search_sync AFTER INSERT OR UPDATE OF name, email, company, "
        "phone, created_at, deleted_at ON contacts FOR EACH ROW "
        "EXECUTE FUNCTION pytake_contact_search_sync()"
    )
