"""contact search: the page function hands back each contact's tag ids

A list page wrote each contact's tags with a correlated subquery on ``contact_tags``
per row: about 5 µs of backend CPU a row, 0.24 ms of a 51-row page, though most
contacts have no tag (bench/contacts_search.py's mix: 1.34 → 1.11 ms a page without
it). The search table already carries ``tag_ids`` (kept by a trigger since 0006) and
every shape of the page query reads that row, so ``pytake_contact_page`` now returns
them beside the id and rank; the list reads ``tags`` only for contacts that have some,
by primary key. Same statement, same snapshot: the ids and the contact row agree.

Revision ID: 0008
"""

import runpy
from pathlib import Path

from alembic import op

from pytake_common.migrations import patched

revision = "0008"
down_revision = "0007"

_HERE = Path(__file__).parent
#: migration 0005's and 0006's module globals (the functions this one changes)
V5 = runpy.run_path(str(_HERE / "20261230_0005_search_vocabulary.py"))
V6 = runpy.run_path(str(_HERE / "20261231_0006_search_plans.py"))

#: (0006's text, this revision's text) of pytake_contact_search_sql's changed parts:
#: every query shape selects ``tag_ids`` third
CHANGES = (
    (
        "nothing constant text := 'SELECT NULL::uuid, NULL::int WHERE false';",
        "nothing constant text := 'SELECT NULL::uuid, NULL::int, NULL::uuid[] WHERE false';",
    ),
    (
        "'SELECT f.contact_id, f.rank FROM (SELECT s.contact_id, (%s)::int AS rank,'\n"
        "            ' s.created_at FROM contact_search s'",
        "'SELECT f.contact_id, f.rank, f.tag_ids FROM (SELECT s.contact_id,'\n"
        "            ' (%s)::int AS rank, s.tag_ids, s.created_at FROM contact_search s'",
    ),
    (
        "'SELECT s.contact_id, (%s)::int AS rank FROM contact_search s'\n        ' WHERE",
        "'SELECT s.contact_id, (%s)::int AS rank, s.tag_ids FROM contact_search s'\n"
        "        ' WHERE",
    ),
    (
        "'WITH probe AS MATERIALIZED (SELECT s.contact_id, 0 AS rank FROM ('",
        "'WITH probe AS MATERIALIZED (SELECT s.contact_id, 0 AS rank, s.tag_ids FROM ('",
    ),
    (
        "' wide AS MATERIALIZED (SELECT s.contact_id, 0 AS rank FROM ('",
        "' wide AS MATERIALIZED (SELECT s.contact_id, 0 AS rank, s.tag_ids FROM ('",
    ),
)


SEARCH_SQL_FN = patched(V6["SEARCH_SQL_FN"], CHANGES)
PAGE_FN = patched(
    V5["PAGE_FN"],
    (
        (
            "RETURNS TABLE (contact_id uuid, rank int)\n",
            "RETURNS TABLE (contact_id uuid, rank int, tag_ids uuid[])\n",
        ),
    ),
)

# A function's result columns cannot change in place: it is dropped and created again,
# executable by PUBLIC as it always was (it takes the organization from the session's
# binding, never from its caller), said explicitly in case default privileges change.
_DROP_PAGE = f"DROP FUNCTION pytake_contact_page({V5['SIGNATURE']})"
_GRANT_PAGE = f"GRANT EXECUTE ON FUNCTION pytake_contact_page({V5['SIGNATURE']}) TO PUBLIC"


def upgrade() -> None:
    op.execute(_DROP_PAGE)
    op.execute(SEARCH_SQL_FN)
    op.execute(PAGE_FN)
    op.execute(_GRANT_PAGE)


def downgrade() -> None:
    op.execute(_DROP_PAGE)
    op.execute(V6["SEARCH_SQL_FN"])
    op.execute(V5["PAGE_FN"])
    op.execute(_GRANT_PAGE)
