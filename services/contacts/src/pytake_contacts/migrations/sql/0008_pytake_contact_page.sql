CREATE OR REPLACE FUNCTION pytake_contact_page(
    q text, digits text, tag_id uuid, assignee_id uuid, unassigned boolean,
    blocked boolean, opted_in boolean, created_from timestamptz, created_to timestamptz,
    interacted_from timestamptz, interacted_to timestamptz,
    after_rank int, after_at timestamptz, after_id uuid, max_rows int
)
RETURNS TABLE (contact_id uuid, rank int, tag_ids uuid[])
LANGUAGE plpgsql STABLE SECURITY DEFINER ROWS 50
SET search_path = public, pg_temp
SET pg_trgm.word_similarity_threshold = 0.5
SET max_parallel_workers_per_gather = 0
AS $fn$
DECLARE
    page_sql text := pytake_contact_search_sql(
        q, digits, tag_id, assignee_id, unassigned, blocked, opted_in, created_from,
        created_to, interacted_from, interacted_to, after_rank, after_at, after_id, max_rows);
BEGIN
    IF page_sql IS NOT NULL THEN
        RETURN QUERY EXECUTE page_sql;
    END IF;
END
$fn$
