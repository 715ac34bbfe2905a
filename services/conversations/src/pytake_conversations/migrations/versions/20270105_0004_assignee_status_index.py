"""an index for an agent's inbox by status ("my open conversations")

``?assignee_id=&status=`` walked ``ix_conversations_assignee_activity`` (organization,
assignee, activity) and filtered on the status: every conversation the agent ever had
was read when few or none had that status (bench/inbox.py: 5,000 index entries and
2,500 heap pages for an empty page, 65 ms cold). With the status between the assignee
and the activity the page is a backward index range scan. The assignee-only index stays
for ``?assignee_id=`` alone.

Built ``CONCURRENTLY`` (outside the migration's transaction), so writers are not
blocked while it is built on a big table (docs/operations.md, "expand").

Revision ID: 0004
"""

from alembic import op

revision = "0004"
down_revision = "0003"


INDEX = "ix_conversations_assignee_status_activity"


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            INDEX,
            "conversations",
            ["organization_id", "assignee_id", "status", "last_message_at", "id"],
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(INDEX, "conversations", postgresql_concurrently=True)
