"""conversation counts per status, kept by triggers

``GET /v1/conversations/counts`` without filters counted every conversation of the
organization (a parallel seq scan: ~190 ms at 100,000 conversations). Triggers now keep
``conversation_counts`` (organization, status, shard) → n; the endpoint sums at most
4 x 8 rows. Inserts and deletes are counted per statement from transition tables (bulk
loads cost one upsert per status); a status change is one row trigger that fires only
when the status really changes. Writers pick one of 8 rows at random so that
concurrent transactions of one organization rarely wait on the same counter row, and
each trigger touches its rows in (status, shard) order.

The table has RLS enabled but not forced: the app role sees only its tenant's rows, and
the SECURITY DEFINER trigger functions (run as the owner) can write any tenant's.

Revision ID: 0003
"""

from alembic import op

from pytake_common.db import rls_statements

revision = "0003"
down_revision = "0002"

COUNT_ROWS_FN = """
CREATE OR REPLACE FUNCTION pytake_conversation_count_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    sign int := CASE WHEN TG_OP = 'INSERT' THEN 1 ELSE -1 END;
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO conversation_counts AS c (organization_id, status, shard, n)
        SELECT organization_id, status, floor(random() * 8)::int, sign * count(*)
        FROM changed_rows GROUP BY organization_id, status ORDER BY organization_id, status
        ON CONFLICT (organization_id, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    ELSE
        INSERT INTO conversation_counts AS c (organization_id, status, shard, n)
        SELECT organization_id, status, floor(random() * 8)::int, sign * count(*)
        FROM gone_rows GROUP BY organization_id, status ORDER BY organization_id, status
        ON CONFLICT (organization_id, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    END IF;
    RETURN NULL;
END
$fn$
"""

COUNT_STATUS_FN = """
CREATE OR REPLACE FUNCTION pytake_conversation_count_status() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
DECLARE
    s int := floor(random() * 8)::int;
BEGIN
    INSERT INTO conversation_counts AS c (organization_id, status, shard, n)
    SELECT NEW.organization_id, t.status, s, t.delta
    FROM (VALUES (OLD.status::text, -1), (NEW.status::text, 1)) AS t (status, delta)
    ORDER BY t.status
    ON CONFLICT (organization_id, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$fn$
"""

COUNT_TRUNCATE_FN = """
CREATE OR REPLACE FUNCTION pytake_conversation_count_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
AS $fn$
BEGIN
    DELETE FROM conversation_counts;
    RETURN NULL;
END
$fn$
"""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE conversation_counts (
            organization_id uuid NOT NULL,
            status text NOT NULL,
            shard smallint NOT NULL,
            n bigint NOT NULL,
            PRIMARY KEY (organization_id, status, shard)
        )
        """
    )
    for stmt in rls_statements("conversation_counts"):
        if "FORCE" not in stmt:
            op.execute(stmt)
    op.execute(COUNT_ROWS_FN)
    op.execute(COUNT_STATUS_FN)
    op.execute(COUNT_TRUNCATE_FN)
    # Count what is there, then keep counting: the lock keeps writers out in between.
    op.execute("LOCK TABLE conversations IN SHARE ROW EXCLUSIVE MODE")
    op.execute(
        "INSERT INTO conversation_counts (organization_id, status, shard, n) "
        "SELECT organization_id, status, 0, count(*) FROM conversations "
        "GROUP BY organization_id, status"
    )
    op.execute(
        "CREATE TRIGGER conversations_count_insert AFTER INSERT ON conversations "
        "REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION pytake_conversation_count_rows()"
    )
    op.execute(
        "CREATE TRIGGER conversations_count_delete AFTER DELETE ON conversations "
        "REFERENCING OLD TABLE AS gone_rows FOR EACH STATEMENT "
        "EXECUTE FUNCTION pytake_conversation_count_rows()"
    )
    op.execute(
        "CREATE TRIGGER conversations_count_status AFTER UPDATE OF status ON conversations "
        "FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) "
        "EXECUTE FUNCTION pytake_conversation_count_status()"
    )
    op.execute(
        "CREATE TRIGGER conversations_count_truncate AFTER TRUNCATE ON conversations "
        "FOR EACH STATEMENT EXECUTE FUNCTION pytake_conversation_count_truncate()"
    )


def downgrade() -> None:
    for trigger in ("insert", "delete", "status", "truncate"):
        op.execute(f"DROP TRIGGER IF EXISTS conversations_count_{trigger} ON conversations")
    for fn in ("rows", "status", "truncate"):
        op.execute(f"DROP FUNCTION IF EXISTS pytake_conversation_count_{fn}()")
    op.execute("DROP TABLE IF EXISTS conversation_counts")
