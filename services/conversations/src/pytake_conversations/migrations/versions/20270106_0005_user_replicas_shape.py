"""user_replicas: the shape every service's copy of auth's users has (pytake_common.auth_users)

*Expand* (docs/operations.md, "Upgrading with migrations"): ``deleted_at`` (when the user
was deleted; it was a flag, ``deleted``) and ``updated_at`` (the time of the newest event
applied; it was ``version_at``) are added and filled from the old columns; ``role`` may
be unknown (an activation seen before the creation); the organization index takes the
shared name. The old columns stay, with defaults so that new code's rows satisfy them,
until no pod runs code that reads them; a later revision drops ``deleted`` and
``version_at`` (*contract*).

Revision ID: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("user_replicas", sa.Column("deleted_at", TS, nullable=True))
    op.add_column(
        "user_replicas",
        sa.Column("updated_at", TS, nullable=False, server_default=sa.text("now()")),
    )
    op.execute(
        "UPDATE user_replicas SET updated_at = version_at,"
        " deleted_at = CASE WHEN deleted THEN version_at END"
    )
    op.alter_column("user_replicas", "role", nullable=True, existing_type=sa.String(32))
    op.alter_column("user_replicas", "version_at", server_default=sa.text("now()"))
    op.execute("ALTER INDEX ix_user_replicas_org RENAME TO ix_user_replicas_organization_id")


def downgrade() -> None:
    op.execute("ALTER INDEX ix_user_replicas_organization_id RENAME TO ix_user_replicas_org")
    op.execute(
        "UPDATE user_replicas SET version_at = updated_at, deleted = deleted_at IS NOT NULL,"
        " role = coalesce(role, 'agent')"
    )
    op.alter_column("user_replicas", "version_at", server_default=None)
    op.alter_column("user_replicas", "role", nullable=False, existing_type=sa.String(32))
    op.drop_column("user_replicas", "updated_at")
    op.drop_column("user_replicas", "deleted_at")
