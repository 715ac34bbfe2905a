"""auth's users in the shared shape (pytake_common.auth_users), as a service keeps them."""

import sqlalchemy as sa
from alembic import op

from pytake_common.auth_users import users_table
from pytake_common.db import rls_statements

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    users_table(sa.MetaData()).create(op.get_bind())
    for stmt in rls_statements("users"):
        op.execute(stmt)


def downgrade() -> None:
    op.drop_table("users")
