"""messages.sender_type: who ``sent_by`` is, a person or an API client

Outbound messages and notes written so far were all sent by people: they are marked
``user``. The check is added ``NOT VALID`` and validated afterwards, so the table is not
locked against writes while existing rows are checked.

Revision ID: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.add_column("messages", sa.Column("sender_type", sa.String(16), nullable=True))
    op.execute("UPDATE messages SET sender_type = 'user' WHERE sent_by IS NOT NULL")
    op.execute(
        "ALTER TABLE messages ADD CONSTRAINT ck_messages_sender_type "
        "CHECK (sender_type IN ('user', 'api_client')) NOT VALID"
    )
    op.execute("ALTER TABLE messages VALIDATE CONSTRAINT ck_messages_sender_type")


def downgrade() -> None:
    op.drop_constraint("ck_messages_sender_type", "messages", type_="check")
    op.drop_column("messages", "sender_type")
