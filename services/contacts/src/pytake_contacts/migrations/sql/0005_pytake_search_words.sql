CREATE OR REPLACE FUNCTION pytake_search_words(VARIADIC parts text[]) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT coalesce(array_agg(DISTINCT w COLLATE "C" ORDER BY w COLLATE "C"), '{}')
    FROM regexp_split_to_table(
        lower(pytake_unaccent(array_to_string(parts, ' '))), '[[:space:][:punct:]]+'
    ) AS w
    WHERE w <> '' AND length(w) <= 64
$fn$
