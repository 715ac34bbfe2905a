CREATE OR REPLACE FUNCTION pytake_contact_tags_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off
AS $fn$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        UPDATE contact_search SET tag_ids = array_remove(tag_ids, OLD.tag_id)
        WHERE contact_id = OLD.contact_id AND tag_ids @> ARRAY[OLD.tag_id];
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE contact_search SET tag_ids = array_append(tag_ids, NEW.tag_id)
        WHERE contact_id = NEW.contact_id AND NOT tag_ids @> ARRAY[NEW.tag_id];
    END IF;
    RETURN NULL;
END
$fn$
