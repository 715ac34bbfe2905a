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

from pytake_common.migrations import frozen_sql

revision = "0006"
down_revision = "0005"

#: migration 0005's module globals (its GIN options)
PREVIOUS = runpy.run_path(str(Path(__file__).with_name("20261230_0005_search_vocabulary.py")))

#: the frozen sources (pytake_contacts/sql/ holds the current ones)
SEARCH_SQL_FN = frozen_sql(__file__, "0006_pytake_contact_search_sql")

TAGS_FN = frozen_sql(__file__, "0006_pytake_contact_tags_sync")


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
    op.execute(frozen_sql(__file__, "0005_pytake_contact_search_sql"))
    op.execute("DROP TRIGGER contact_tags_search_sync ON contact_tags")
    op.execute("DROP FUNCTION pytake_contact_tags_sync()")
    op.execute("ALTER TABLE contact_search DROP COLUMN tag_ids")
