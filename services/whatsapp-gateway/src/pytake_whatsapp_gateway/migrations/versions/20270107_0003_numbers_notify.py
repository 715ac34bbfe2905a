"""numbers: NOTIFY pytake_numbers on every change the webhook intake's cache depends on

Revision ID: 0003
"""

from alembic import op

revision = "0003"
down_revision = "0002"

# The payload is the phone_number_id changed (old and new when it moved); the intake's
# in-memory directory of numbers (webhooks/directory.py) drops those entries.
FUNCTION = """
CREATE FUNCTION pytake_numbers_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('pytake_numbers', OLD.phone_number_id);
    END IF;
    IF TG_OP <> 'DELETE' AND (TG_OP = 'INSERT' OR NEW.phone_number_id <> OLD.phone_number_id)
    THEN
        PERFORM pg_notify('pytake_numbers', NEW.phone_number_id);
    END IF;
    RETURN NULL;
END
$$
"""
TRIGGER = """
CREATE TRIGGER numbers_changed
    AFTER INSERT OR DELETE OR UPDATE OF
        organization_id, phone_number_id, waba_id, display_phone_number, app_secret_enc,
        removed_at
    ON numbers FOR EACH ROW EXECUTE FUNCTION pytake_numbers_changed()
"""


def upgrade() -> None:
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER numbers_changed ON numbers")
    op.execute("DROP FUNCTION pytake_numbers_changed()")
