"""outbox_dead: outbox rows the broker can never take, set aside by the relay

Revision ID: 0012_outbox_dead
Revises: 0011_parked
"""

from alembic import op

from pytake_common.mechanics import create_mechanics_table, drop_mechanics_table

revision = "0012_outbox_dead"
down_revision = "0011_parked"


def upgrade() -> None:
    create_mechanics_table(op.get_bind(), "outbox_dead")


def downgrade() -> None:
    drop_mechanics_table(op.get_bind(), "outbox_dead")
