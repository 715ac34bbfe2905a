CREATE OR REPLACE FUNCTION pytake_contact_vocabulary_release(org uuid, gone text[], leaving uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off
AS $fn$
BEGIN
    -- FOR UPDATE waits for transactions that just added one of these words (KEY SHARE);
    -- the DELETE below then runs in a new snapshot that sees their contacts.
    PERFORM 1 FROM contact_vocabulary
    WHERE organization_id = org AND word = ANY (gone) ORDER BY word FOR UPDATE;
    DELETE FROM contact_vocabulary v
    WHERE v.organization_id = org AND v.word = ANY (gone)
      AND NOT EXISTS (
          SELECT 1 FROM contact_search s
          WHERE s.organization_id = org AND s.words @> ARRAY[v.word::text]
            AND s.contact_id IS DISTINCT FROM leaving
      );
END
$fn$
