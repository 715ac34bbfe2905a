CREATE OR REPLACE FUNCTION pytake_digit_grams(digits text) RETURNS text[]
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT
AS $fn$
BEGIN
    RETURN ARRAY(SELECT DISTINCT substr(digits, i, 6) FROM generate_series(1, length(digits) - 5) AS i);
END
$fn$
