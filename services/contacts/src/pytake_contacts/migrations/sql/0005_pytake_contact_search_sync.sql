CREATE OR REPLACE FUNCTION pytake_contact_search_sync() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp
SET enable_seqscan = off
AS $fn$
DECLARE
    new_words text[];
    old_words text[] := '{}';
    added text[] := '{}';
    gone text[] := '{}';
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pytake_contact_vocabulary_release(
            OLD.organization_id, pytake_search_words(OLD.name, OLD.email, OLD.company), OLD.id);
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' OR (OLD.name, OLD.email, OLD.company)
            IS DISTINCT FROM (NEW.name, NEW.email, NEW.company) THEN
        new_words := pytake_search_words(NEW.name, NEW.email, NEW.company);
        IF TG_OP = 'UPDATE' THEN
            old_words := pytake_search_words(OLD.name, OLD.email, OLD.company);
        END IF;
        added := ARRAY(SELECT unnest(new_words) EXCEPT SELECT unnest(old_words) ORDER BY 1);
        gone := ARRAY(SELECT unnest(old_words) EXCEPT SELECT unnest(new_words) ORDER BY 1);
    END IF;
    IF cardinality(added) > 0 THEN
        -- Lock the words that exist (shared: adders never wait for each other), then
        -- insert the missing ones; a concurrent release waits for this transaction.
        PERFORM 1 FROM contact_vocabulary
        WHERE organization_id = NEW.organization_id AND word = ANY (added)
        ORDER BY word FOR KEY SHARE;
        INSERT INTO contact_vocabulary (organization_id, word)
        SELECT NEW.organization_id, w FROM unnest(added) AS w ORDER BY w
        ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO contact_search (contact_id, organization_id, created_at, deleted, blocked,
                                    opted_in, assignee_id, last_interaction_at, phone_digits,
                                    phone_grams, words)
        VALUES (NEW.id, NEW.organization_id, NEW.created_at, NEW.deleted_at IS NOT NULL,
                NEW.blocked_at IS NOT NULL, NEW.marketing_opt_in IS TRUE, NEW.assignee_id,
                NEW.last_interaction_at, NEW.phone_digits, pytake_digit_grams(NEW.phone_digits),
                new_words);
    ELSE  -- every contact has its row (this trigger, migration 0005); HOT unless words change
        UPDATE contact_search SET
            created_at = NEW.created_at,
            deleted = NEW.deleted_at IS NOT NULL,
            blocked = NEW.blocked_at IS NOT NULL,
            opted_in = NEW.marketing_opt_in IS TRUE,
            assignee_id = NEW.assignee_id,
            last_interaction_at = NEW.last_interaction_at,
            phone_digits = NEW.phone_digits,
            phone_grams = CASE WHEN phone_digits IS DISTINCT FROM NEW.phone_digits
                               THEN pytake_digit_grams(NEW.phone_digits) ELSE phone_grams END,
            words = coalesce(new_words, words)
        WHERE contact_id = NEW.id
          AND (created_at, deleted, blocked, opted_in, assignee_id, last_interaction_at,
               phone_digits, words)
              IS DISTINCT FROM
              (NEW.created_at, NEW.deleted_at IS NOT NULL, NEW.blocked_at IS NOT NULL,
               NEW.marketing_opt_in IS TRUE, NEW.assignee_id, NEW.last_interaction_at,
               NEW.phone_digits, coalesce(new_words, words));
    END IF;
    IF cardinality(gone) > 0 THEN
        PERFORM pytake_contact_vocabulary_release(NEW.organization_id, gone, NULL);
    END IF;
    RETURN NULL;
END
$fn$
