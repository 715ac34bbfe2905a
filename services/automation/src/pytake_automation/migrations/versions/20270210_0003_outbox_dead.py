"""outbox_dead: outbox rows the broker can never take, set aside by the relay

Revision ID: 0003_outbox_dead
Revises: 0002_slacsat
"""

from alembic import op

from pytake_common.mechanics import create_mechanics_table, drop_mechanics_table

revision = "0003_outbox_dead"
down_revision = "0002_slacsat"


def upgrade() -> None:
    create_mechanics_table(op.get_bind(), "outbox_dead")


def downgrade() -> None:
    drop_mechanics_table(op.get_bind(), "outbox_dead")
