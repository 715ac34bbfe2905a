"""contact search: tags on contact_search, phone fragments through their grams, longer walks

Measured at 200,000 contacts (bench/contacts_search.py's data), backend CPU per page:

* a tag filter walked the (created_at, id) index and probed ``contact_tags`` once per
  contact (2,466 probes, 5,000 buffers for 51 rows: 2.4-2.7 ms). ``contact_search`` now
  carries each contact's ``tag_ids`` (kept by a trigger on ``contact_tags``; GIN-indexed
  for rare tags), so the walk checks the row it already reads;
* a phone fragment of six digits or more that many phones share (``+55 11 90012``: the
  10,000 phones with those digits, created late) was read along the (created_at, id)
  index, 120,000 rows filtered out before the first match: 64 ms. Its matches are now
  always collected through the digit grams (GIN) and sorted: cost bounded by the number
  of matches (3 ms for 10,000, 0.1 ms for one);
* several words in one rank whose first 1,000 contacts in (created_at, id) order held
  some matches but not a page read every match through the words index ('padaria
  avila' + opted in: 20,000 matches, 10,600 pages, 31 ms). When the probe holds 3 in
  20 of a page or more, the next 10,000 contacts are walked before that (1.5 ms).

Tag changes keep ``tag_ids`` with ``array_append``/``array_remove`` on the current row
version (a concurrent tagger's change is re-read after its lock, never overwritten).

Revision ID: 0006
"""

import runpy
from pathlib import Path

from alembic import op

from pytake_common.migrations import patched

revision = "0006"
down_revision = "0005"

#: migration 0005's module globals (its search function is the base of this one and of
#: the downgrade)
PREVIOUS = runpy.run_path(str(Path(__file__).with_name("20261230_0005_search_vocabulary.py")))

#: (0005's text, this revision's text) of pytake_contact_search_sql's changed parts
CHANGES = (
    (
        "    lim int := coalesce(max_rows, 50);\n",
        "    lim int := coalesce(max_rows, 50);\n"
        "    -- collect every match through a GIN index, then sort (never walk the order)\n"
        "    by_grams boolean := false;\n",
    ),
    (
        "        IF length(digits) >= 6 THEN  -- the first and last six digits: few candidates\n",
        "        IF length(digits) >= 6 THEN  -- the first and last six digits: few candidates\n"
        "            by_grams := true;\n",
    ),
    (
        "        cond := cond || format(\n"
        "            ' AND s.contact_id IN (SELECT t.contact_id FROM contact_tags t'\n"
        "            ' WHERE t.tag_id = %L AND t.organization_id = %L)', tag_id, org);\n",
        "        cond := cond || format(' AND s.tag_ids @> %L::uuid[]', ARRAY[tag_id]);\n",
    ),
    (
        "    page := format(\n"
        "        'SELECT s.contact_id, (%s)::int AS rank FROM contact_search s'\n",
        "    IF by_grams THEN\n"
        "        -- The matches of a fragment many phones share can all sit late in the\n"
        "        -- (created_at, id) order: OFFSET 0 keeps the planner from walking it.\n"
        "        RETURN format(\n"
        "            'SELECT f.contact_id, f.rank FROM (SELECT s.contact_id, (%s)::int AS rank,'\n"
        "            ' s.created_at FROM contact_search s'\n"
        "            ' WHERE s.organization_id = %L AND NOT s.deleted%s%s OFFSET 0) f'\n"
        "            ' ORDER BY 2, f.created_at, f.contact_id LIMIT %s',\n"
        "            rank, org, cond, keyset, lim);\n"
        "    END IF;\n"
        "    page := format(\n"
        "        'SELECT s.contact_id, (%s)::int AS rank FROM contact_search s'\n",
    ),
    (
        "    RETURN format(\n"
        "        'WITH probe AS MATERIALIZED (SELECT s.contact_id, 0 AS rank FROM ('\n"
        "        ' SELECT * FROM contact_search s WHERE s.organization_id = %L AND NOT s.deleted%s'\n"
        "        ' ORDER BY s.created_at, s.contact_id LIMIT %s) s WHERE true%s'\n"
        "        ' ORDER BY s.created_at, s.contact_id LIMIT %s)'\n"
        "        ' SELECT * FROM probe WHERE (SELECT count(*) FROM probe) >= %s'\n"
        "        ' UNION ALL SELECT * FROM (%s) f WHERE (SELECT count(*) FROM probe) < %s',\n"
        "        org, keyset, probe_rows, cond, lim, lim, page, lim);\n",
        "    -- When the probe holds some matches but not a page (3 in 20 of one or more:\n"
        "    -- the words go together in 0.8 % of the contacts or more), a ten times longer\n"
        "    -- walk finds the page sooner than reading every match ('padaria avila' + opted\n"
        "    -- in: 32 in 1,000; the full query read 20,000 matches in 10,600 pages, 31 ms).\n"
        "    RETURN format(\n"
        "        'WITH probe AS MATERIALIZED (SELECT s.contact_id, 0 AS rank FROM ('\n"
        "        ' SELECT * FROM contact_search s WHERE s.organization_id = %1$L AND NOT s.deleted%2$s'\n"
        "        ' ORDER BY s.created_at, s.contact_id LIMIT %3$s) s WHERE true%4$s'\n"
        "        ' ORDER BY s.created_at, s.contact_id LIMIT %5$s),'\n"
        "        ' wide AS MATERIALIZED (SELECT s.contact_id, 0 AS rank FROM ('\n"
        "        ' SELECT * FROM contact_search s WHERE s.organization_id = %1$L AND NOT s.deleted%2$s'\n"
        "        ' ORDER BY s.created_at, s.contact_id LIMIT %6$s) s WHERE true%4$s'\n"
        "        ' ORDER BY s.created_at, s.contact_id LIMIT %5$s)'\n"
        "        ' SELECT * FROM probe WHERE (SELECT count(*) FROM probe) >= %5$s'\n"
        "        ' UNION ALL SELECT * FROM wide WHERE (SELECT count(*) FROM probe) < %5$s'\n"
        "        ' AND (SELECT count(*) FROM probe) * 20 >= %5$s * 3'\n"
        "        ' AND (SELECT count(*) FROM wide) >= %5$s'\n"
        "        ' UNION ALL SELECT * FROM (%7$s) f WHERE (SELECT count(*) FROM probe) < %5$s'\n"
        "        ' AND ((SELECT count(*) FROM probe) * 20 < %5$s * 3'\n"
        "        ' OR (SELECT count(*) FROM wide) < %5$s)',\n"
        "        org, keyset, probe_rows, cond, lim, probe_rows * 10, page);\n",
    ),
)


SEARCH_SQL_FN = patched(PREVIOUS["SEARCH_SQL_FN"], CHANGES)

TAGS_FN = r"""
CREATE OR REPLACE FUNCTION pytake_contact_tags_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off
AS $fn$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE contact_search SET tag_ids = array_remove(tag_ids, OLD.tag_id)
        WHERE contact_id = OLD.contact_id AND tag_ids @> ARRAY[OLD.tag_id];
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE contact_search SET tag_ids = array_append(tag_ids, NEW.tag_id)
        WHERE contact_id = NEW.contact_id AND NOT tag_ids @> ARRAY[NEW.tag_id];
    END IF;
    RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    op.execute("LOCK TABLE contact_tags IN SHARE ROW EXCLUSIVE MODE")
    op.execute("ALTER TABLE contact_search ADD COLUMN tag_ids uuid[] NOT NULL DEFAULT '{}'")
    op.execute(
        "UPDATE contact_search s SET tag_ids = t.ids FROM ("
        " SELECT contact_id, array_agg(tag_id ORDER BY tag_id) AS ids FROM contact_tags"
        " GROUP BY contact_id) t WHERE s.contact_id = t.contact_id"
    )
    op.execute(
        "CREATE INDEX ix_contact_search_tags ON contact_search USING gin (tag_ids)"
        + PREVIOUS["GIN_OPTIONS"]
    )
    op.execute(TAGS_FN)
    op.execute(
        "CREATE TRIGGER contact_tags_search_sync AFTER INSERT OR DELETE OR UPDATE OF "
        "contact_id, tag_id ON contact_tags FOR EACH ROW "
        "EXECUTE FUNCTION pytake_contact_tags_sync()"
    )
    op.execute(SEARCH_SQL_FN)
    op.execute("ANALYZE contact_search")


def downgrade() -> None:
    op.execute(PREVIOUS["SEARCH_SQL_FN"])
    op.execute("DROP TRIGGER contact_tags_search_sync ON contact_tags")
    op.execute("DROP FUNCTION pytake_contact_tags_sync()")
    op.execute("ALTER TABLE contact_search DROP COLUMN tag_ids")
