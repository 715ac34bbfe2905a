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

from pytake_common.migrations import frozen_sql

revision = "0008"
down_revision = "0007"

#: migration 0005's module globals (the page function's signature)
V5 = runpy.run_path(str(Path(__file__).with_name("20261230_0005_search_vocabulary.py")))

#: the frozen sources (pytake_contacts/sql/ holds the current ones)
SEARCH_SQL_FN = frozen_sql(__file__, "0008_pytake_contact_search_sql")
PAGE_FN = frozen_sql(__file__, "0008_pytake_contact_page")

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
    op.execute(frozen_sql(__file__, "0006_pytake_contact_search_sql"))
    op.execute(frozen_sql(__file__, "0005_pytake_contact_page"))
    op.execute(_GRANT_PAGE)
