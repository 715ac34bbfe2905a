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
from pytake_common.migrations import frozen_sql

revision = "0005"
down_revision = "0004"

WORDS_FN = frozen_sql(__file__, "0005_pytake_search_words")

#: Every six-digit run of a phone's digits. Digit trigrams are unselective (a thousand
#: of them share 300,000 phones), six-digit runs are not: a GIN index on them finds a
#: fragment of six digits or more among few candidates (contact_search.phone_grams).
GRAMS_FN = frozen_sql(__file__, "0005_pytake_digit_grams")

RELEASE_FN = frozen_sql(__file__, "0005_pytake_contact_vocabulary_release")

SYNC_FN = frozen_sql(__file__, "0005_pytake_contact_search_sync")


#: The page query for a search (and any filters), as SQL with the organization, the
#: matched vocabulary words and every value inlined as literals (%L): the planner sees
#: constants, so it can use the prefix and trigram indexes and the array statistics.
#: NULL when there is no tenant bound; a query that can match nothing when a word has no
#: match in the vocabulary.
SEARCH_SQL_FN = frozen_sql(__file__, "0005_pytake_contact_search_sql")

PAGE_FN = frozen_sql(__file__, "0005_pytake_contact_page")

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
