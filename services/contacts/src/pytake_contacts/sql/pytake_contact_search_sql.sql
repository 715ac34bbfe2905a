CREATE OR REPLACE FUNCTION pytake_contact_search_sql(
    q text, digits text, tag_id uuid, assignee_id uuid, unassigned boolean,
    blocked boolean, opted_in boolean, created_from timestamptz, created_to timestamptz,
    interacted_from timestamptz, interacted_to timestamptz,
    after_rank int, after_at timestamptz, after_id uuid, max_rows int
)
RETURNS text
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp
SET pg_trgm.word_similarity_threshold = 0.5
AS $fn$
DECLARE
    org uuid := NULLIF(current_setting('pytake.organization_id', true), '')::uuid;
    nothing constant text := 'SELECT NULL::uuid, NULL::int, NULL::uuid[] WHERE false';
    -- at most this many vocabulary words per query word and kind (prefix, fuzzy)
    per_word constant int := 50;
    -- rows of the (created_at, id) order tried first for several words in one rank
    probe_rows constant int := 1000;
    lim int := coalesce(max_rows, 50);
    -- collect every match through a GIN index, then sort (never walk the order)
    by_grams boolean := false;
    grams text;
    words_matched int := 0;
    keyset text := '';
    page text;
    cond text := '';
    rank text := '';
    w text;
    pattern text;
    upper text;
    exact text[];
    prefix text[];
    fuzzy text[];
    terms text[];
BEGIN
    IF org IS NULL THEN
        RETURN NULL;
    END IF;
    IF digits IS NOT NULL THEN
        IF length(digits) >= 6 THEN  -- the first and last six digits: few candidates
            by_grams := true;
            cond := cond || format(
                ' AND s.phone_grams @> %L::text[] AND strpos(s.phone_digits, %L) > 0',
                ARRAY[left(digits, 6), right(digits, 6)], digits);
        ELSE
            cond := cond || format(' AND s.phone_digits LIKE %L', '%' || digits || '%');
        END IF;
    END IF;
    IF q IS NOT NULL THEN
        terms := (pytake_search_words(q))[1:8];
        IF cardinality(terms) = 0 THEN
            RETURN nothing;
        END IF;
        FOREACH w IN ARRAY terms LOOP
            -- Static statements (plans kept for the session); a C-collated range is the
            -- prefix test, so the btree indexes serve it with a parameter.
            upper := w || chr(1114111);
            exact := ARRAY(SELECT v.word::text FROM contact_vocabulary v
                           WHERE v.organization_id = org AND v.word = w);
            IF w ~ '[0-9]' THEN
                prefix := ARRAY(SELECT v.word::text FROM contact_vocabulary v
                                WHERE v.organization_id = org AND v.word > w AND v.word < upper
                                ORDER BY v.word LIMIT per_word);
                fuzzy := '{}';
            ELSE
                prefix := ARRAY(SELECT v.word::text FROM contact_vocabulary v
                                WHERE v.organization_id = org AND v.word !~ '[0-9]'
                                  AND v.word > w AND v.word < upper
                                ORDER BY length(v.word), v.word LIMIT per_word);
                fuzzy := '{}';
                -- Typos and substrings only for a word no contact has as such (a known
                -- word is what was meant), of three letters or more; the closest first.
                IF cardinality(exact) = 0 AND length(w) >= 3 THEN
                    pattern := '%' || replace(replace(replace(w, '\', '\\'), '%', '\%'), '_', '\_')
                               || '%';
                    fuzzy := ARRAY(
                        SELECT v.word::text FROM contact_vocabulary v
                        WHERE v.organization_id = org AND v.word !~ '[0-9]'
                          AND NOT (v.word >= w AND v.word < upper)
                          AND (v.word LIKE pattern
                               OR (w <% v.word AND length(v.word) <= length(w) + 2))
                        ORDER BY word_similarity(w, v.word) DESC, v.word LIMIT per_word);
                END IF;
            END IF;
            IF cardinality(exact) + cardinality(prefix) + cardinality(fuzzy) = 0 THEN
                RETURN nothing;
            END IF;
            cond := cond || format(' AND s.words && %L::text[]', exact || prefix || fuzzy);
            words_matched := words_matched + 1;
            -- A word matched only one way adds a constant: left out of the rank.
            IF (cardinality(exact) > 0)::int + (cardinality(prefix) > 0)::int
                    + (cardinality(fuzzy) > 0)::int > 1 THEN
                rank := rank || ' + CASE'
                    || CASE WHEN cardinality(exact) > 0
                            THEN format(' WHEN s.words && %L::text[] THEN 0', exact) ELSE '' END
                    || CASE WHEN cardinality(prefix) > 0 AND cardinality(fuzzy) > 0
                            THEN format(' WHEN s.words && %L::text[] THEN 1', prefix) ELSE '' END
                    || CASE WHEN cardinality(fuzzy) = 0 THEN ' ELSE 1 END' ELSE ' ELSE 2 END' END;
            ELSE
                rank := rank || CASE WHEN cardinality(prefix) > 0 THEN ' + 1'
                                     WHEN cardinality(fuzzy) > 0 THEN ' + 2' ELSE '' END;
            END IF;
        END LOOP;
    END IF;
    rank := '0' || rank;
    IF tag_id IS NOT NULL THEN
        cond := cond || format(' AND s.tag_ids @> %L::uuid[]', ARRAY[tag_id]);
    END IF;
    IF assignee_id IS NOT NULL THEN
        cond := cond || format(' AND s.assignee_id = %L', assignee_id);
    END IF;
    IF unassigned IS NOT NULL THEN
        cond := cond || CASE WHEN unassigned THEN ' AND s.assignee_id IS NULL'
                             ELSE ' AND s.assignee_id IS NOT NULL' END;
    END IF;
    IF blocked IS NOT NULL THEN
        cond := cond || CASE WHEN blocked THEN ' AND s.blocked' ELSE ' AND NOT s.blocked' END;
    END IF;
    IF opted_in IS NOT NULL THEN
        cond := cond || CASE WHEN opted_in THEN ' AND s.opted_in' ELSE ' AND NOT s.opted_in' END;
    END IF;
    IF created_from IS NOT NULL THEN
        cond := cond || format(' AND s.created_at >= %L', created_from);
    END IF;
    IF created_to IS NOT NULL THEN
        cond := cond || format(' AND s.created_at < %L', created_to);
    END IF;
    IF interacted_from IS NOT NULL THEN
        cond := cond || format(' AND s.last_interaction_at >= %L', interacted_from);
    END IF;
    IF interacted_to IS NOT NULL THEN
        cond := cond || format(' AND s.last_interaction_at < %L', interacted_to);
    END IF;
    IF after_at IS NOT NULL THEN
        IF rank = '0' THEN  -- one rank: the keyset is (created_at, id), as the index
            keyset := CASE WHEN coalesce(after_rank, 0) > 0 THEN ' AND false' ELSE
                format(' AND (s.created_at, s.contact_id) > (%L, %L)', after_at, after_id) END;
        ELSE
            keyset := format(' AND (%s, s.created_at, s.contact_id) > (%s, %L, %L)',
                rank, coalesce(after_rank, 0), after_at, after_id);
        END IF;
    END IF;
    IF by_grams THEN
        -- The matches of a fragment many phones share can all sit late in the
        -- (created_at, id) order: OFFSET 0 keeps the planner from walking it.
        grams := format(
            'SELECT f.contact_id, f.rank, f.tag_ids FROM (SELECT s.contact_id,'
            ' (%s)::int AS rank, s.tag_ids, s.created_at FROM contact_search s'
            ' WHERE s.organization_id = %L AND NOT s.deleted%s%s OFFSET 0) f'
            ' ORDER BY 2, f.created_at, f.contact_id LIMIT %s',
            rank, org, cond, keyset, lim);
        IF length(digits) >= 10 OR rank <> '0' THEN
            RETURN grams;
        END IF;
        -- A short fragment may be in most phones (type-ahead): the next contacts
        -- in order first, then a longer walk where they hold some matches.
        RETURN format(
            'WITH probe AS MATERIALIZED (SELECT s.contact_id, 0 AS rank, s.tag_ids'
            ' FROM (SELECT * FROM contact_search s WHERE s.organization_id = %1$L'
            ' AND NOT s.deleted%2$s ORDER BY s.created_at, s.contact_id LIMIT %3$s) s'
            ' WHERE true%4$s ORDER BY s.created_at, s.contact_id LIMIT %5$s),'
            ' wide AS MATERIALIZED (SELECT s.contact_id, 0 AS rank, s.tag_ids'
            ' FROM (SELECT * FROM contact_search s WHERE s.organization_id = %1$L'
            ' AND NOT s.deleted%2$s ORDER BY s.created_at, s.contact_id LIMIT %6$s) s'
            ' WHERE true%4$s ORDER BY s.created_at, s.contact_id LIMIT %5$s)'
            ' SELECT * FROM probe WHERE (SELECT count(*) FROM probe) >= %5$s'
            ' UNION ALL SELECT * FROM wide WHERE (SELECT count(*) FROM probe) < %5$s'
            ' AND (SELECT count(*) FROM probe) >= 3'
            ' AND (SELECT count(*) FROM wide) >= %5$s'
            ' UNION ALL SELECT * FROM (%7$s) f WHERE (SELECT count(*) FROM probe) < %5$s'
            ' AND ((SELECT count(*) FROM probe) < 3'
            ' OR (SELECT count(*) FROM wide) < %5$s)',
            org, keyset, 100, cond, lim, 2000, grams);
    END IF;
    page := format(
        'SELECT s.contact_id, (%s)::int AS rank, s.tag_ids FROM contact_search s'
        ' WHERE s.organization_id = %L AND NOT s.deleted%s%s'
        ' ORDER BY 2, s.created_at, s.contact_id LIMIT %s',
        rank, org, cond, keyset, lim);
    IF rank <> '0' OR words_matched < 2 THEN
        RETURN page;
    END IF;
    -- Several words in one rank: the planner takes them as independent and may expect a
    -- handful of rows where they go together in thousands ('padaria avila': 13,000
    -- contacts, read through the bitmap and sorted). The next rows in (created_at, id)
    -- order are tried first; only when they hold too few matches does the full query run.
    -- When the probe holds some matches but not a page (3 in 20 of one or more:
    -- the words go together in 0.8 % of the contacts or more), a ten times longer
    -- walk finds the page sooner than reading every match ('padaria avila' + opted
    -- in: 32 in 1,000; the full query read 20,000 matches in 10,600 pages, 31 ms).
    RETURN format(
        'WITH probe AS MATERIALIZED (SELECT s.contact_id, 0 AS rank, s.tag_ids FROM ('
        ' SELECT * FROM contact_search s WHERE s.organization_id = %1$L AND NOT s.deleted%2$s'
        ' ORDER BY s.created_at, s.contact_id LIMIT %3$s) s WHERE true%4$s'
        ' ORDER BY s.created_at, s.contact_id LIMIT %5$s),'
        ' wide AS MATERIALIZED (SELECT s.contact_id, 0 AS rank, s.tag_ids FROM ('
        ' SELECT * FROM contact_search s WHERE s.organization_id = %1$L AND NOT s.deleted%2$s'
        ' ORDER BY s.created_at, s.contact_id LIMIT %6$s) s WHERE true%4$s'
        ' ORDER BY s.created_at, s.contact_id LIMIT %5$s)'
        ' SELECT * FROM probe WHERE (SELECT count(*) FROM probe) >= %5$s'
        ' UNION ALL SELECT * FROM wide WHERE (SELECT count(*) FROM probe) < %5$s'
        ' AND (SELECT count(*) FROM probe) * 20 >= %5$s * 3'
        ' AND (SELECT count(*) FROM wide) >= %5$s'
        ' UNION ALL SELECT * FROM (%7$s) f WHERE (SELECT count(*) FROM probe) < %5$s'
        ' AND ((SELECT count(*) FROM probe) * 20 < %5$s * 3'
        ' OR (SELECT count(*) FROM wide) < %5$s)',
        org, keyset, probe_rows, cond, lim, probe_rows * 10, page);
END
$fn$
