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

from alembic import op

from pytake_common.migrations import frozen_sql

revision = "0009"
down_revision = "0008"

#: the frozen source (pytake_contacts/sql/ holds the current one)
SEARCH_SQL_FN = frozen_sql(__file__, "0009_pytake_contact_search_sql")


def upgrade() -> None:
    op.execute(SEARCH_SQL_FN)


def downgrade() -> None:
    op.execute(frozen_sql(__file__, "0008_pytake_contact_search_sql"))
