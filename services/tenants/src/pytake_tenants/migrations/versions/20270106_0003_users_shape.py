"""users: the shape every service's copy of auth's users has (pytake_common.auth_users)

Names and roles as long as contacts' and conversations' copies hold them, and
``is_active`` true unless an event says otherwise. ``updated_at`` keeps its column but
now holds the time of the newest event applied (it held the time of the write), so an
older event arriving late changes nothing. Widening a ``varchar`` rewrites nothing.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    op.alter_column("users", "full_name", type_=sa.String(256), existing_nullable=True)
    op.alter_column("users", "role", type_=sa.String(32), existing_nullable=True)
    op.alter_column("users", "is_active", server_default=sa.true(), existing_nullable=False)


def downgrade() -> None:
    op.alter_column("users", "is_active", server_default=None, existing_nullable=False)
    op.execute("UPDATE users SET role = left(role, 20), full_name = left(full_name, 200)")
    op.alter_column("users", "role", type_=sa.String(20), existing_nullable=True)
    op.alter_column("users", "full_name", type_=sa.String(200), existing_nullable=True)
