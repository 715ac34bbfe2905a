"""users: the shape every service's copy of auth's users has (pytake_common.auth_users)

contacts' table already had the columns; the shared shape also indexes the organization
(the other services' copies had that index).

Revision ID: 0010
"""

from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_index("ix_users_organization_id", "users", ["organization_id"])


def downgrade() -> None:
    op.drop_index("ix_users_organization_id", "users")
