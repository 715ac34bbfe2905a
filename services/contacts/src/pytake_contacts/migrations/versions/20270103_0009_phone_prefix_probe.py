"""contact search: a short phone fragment most phones share tries the next contacts first

Since 0006 a phone fragment of six digits or more collects every match through the
digit grams and sorts them, so a fragment whose matches all sit late in the
(created_at, id) order costs what its matches cost, never a walk past the rest. Type-ahead
turns that around: '+55 11 90' is in every phone of a Brazilian book, and reading all
200,000 matches to keep 51 took 100 ms (bench/contacts_search.py's data; '55119', under
six digits, walks the order: 0.08 ms).

A fragment of six to nine digits now goes the way several words in one rank go (0005,
0006): the next 100 contacts in (created_at, id) order first; if they hold a page, that
is the page. If they hold some matches (3 or more) but not a page, the next 2,000; if
those hold a page, that is the page. Otherwise every match through the grams, as before.
Each way answers the same first matches in order. A sparse fragment pays the short walk
(about 0.1 ms); ten digits or more (a whole national number) stay with the grams alone.

Revision ID: 0009
"""

import runpy
from pathlib import Path

from alembic import op

from pytake_common.migrations import patched

revision = "0009"
down_revision = "0008"

#: migration 0008's module globals (the search function this one changes)
V8 = runpy.run_path(str(Path(__file__).with_name("20270102_0008_page_tag_ids.py")))

CHANGES = (
    (
        "    by_grams boolean := false;\n",
        "    by_grams boolean := false;\n    grams text;\n",
    ),
    (
        "        RETURN format(\n"
        "            'SELECT f.contact_id, f.rank, f.tag_ids FROM (SELECT s.contact_id,'\n"
        "            ' (%s)::int AS rank, s.tag_ids, s.created_at FROM contact_search s'\n"
        "            ' WHERE s.organization_id = %L AND NOT s.deleted%s%s OFFSET 0) f'\n"
        "            ' ORDER BY 2, f.created_at, f.contact_id LIMIT %s',\n"
        "            rank, org, cond, keyset, lim);\n"
        "    END IF;\n",
        "        grams := format(\n"
        "            'SELECT f.contact_id, f.rank, f.tag_ids FROM (SELECT s.contact_id,'\n"
        "            ' (%s)::int AS rank, s.tag_ids, s.created_at FROM contact_search s'\n"
        "            ' WHERE s.organization_id = %L AND NOT s.deleted%s%s OFFSET 0) f'\n"
        "            ' ORDER BY 2, f.created_at, f.contact_id LIMIT %s',\n"
        "            rank, org, cond, keyset, lim);\n"
        "        IF length(digits) >= 10 OR rank <> '0' THEN\n"
        "            RETURN grams;\n"
        "        END IF;\n"
        "        -- A short fragment may be in most phones (type-ahead): the next contacts\n"
        "        -- in order first, then a longer walk where they hold some matches.\n"
        "        RETURN format(\n"
        "            'WITH probe AS MATERIALIZED (SELECT s.contact_id, 0 AS rank, s.tag_ids'\n"
        "            ' FROM (SELECT * FROM contact_search s WHERE s.organization_id = %1$L'\n"
        "            ' AND NOT s.deleted%2$s ORDER BY s.created_at, s.contact_id LIMIT %3$s) s'\n"
        "            ' WHERE true%4$s ORDER BY s.created_at, s.contact_id LIMIT %5$s),'\n"
        "            ' wide AS MATERIALIZED (SELECT s.contact_id, 0 AS rank, s.tag_ids'\n"
        "            ' FROM (SELECT * FROM contact_search s WHERE s.organization_id = %1$L'\n"
        "            ' AND NOT s.deleted%2$s ORDER BY s.created_at, s.contact_id LIMIT %6$s) s'\n"
        "            ' WHERE true%4$s ORDER BY s.created_at, s.contact_id LIMIT %5$s)'\n"
        "            ' SELECT * FROM probe WHERE (SELECT count(*) FROM probe) >= %5$s'\n"
        "            ' UNION ALL SELECT * FROM wide WHERE (SELECT count(*) FROM probe) < %5$s'\n"
        "            ' AND (SELECT count(*) FROM probe) >= 3'\n"
        "            ' AND (SELECT count(*) FROM wide) >= %5$s'\n"
        "            ' UNION ALL SELECT * FROM (%7$s) f WHERE (SELECT count(*) FROM probe) < %5$s'\n"
        "            ' AND ((SELECT count(*) FROM probe) < 3'\n"
        "            ' OR (SELECT count(*) FROM wide) < %5$s)',\n"
        "            org, keyset, 100, cond, lim, 2000, grams);\n"
        "    END IF;\n",
    ),
)

SEARCH_SQL_FN = patched(V8["SEARCH_SQL_FN"], CHANGES)


def upgrade() -> None:
    op.execute(SEARCH_SQL_FN)


def downgrade() -> None:
    op.execute(V8["SEARCH_SQL_FN"])
