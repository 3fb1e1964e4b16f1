-- Facebook's 24-hour standard messaging window: a Page may message a person only within 24
-- hours of that person's last message to it. This is its one definition; every query asking
-- whether someone is inside their window calls it (Rust: the doc of `moonengage_core::subscribers`).
--
-- Plain `LANGUAGE sql` with a single SELECT, STABLE (it reads now()), not STRICT, no SET
-- clause: the planner inlines it into the calling query, so `in_messaging_window(x)` plans as
-- `x > now() - '24:00:00'` and an index on the column can still serve it (see EXPLAIN VERBOSE
-- in bench/README.md).
CREATE FUNCTION in_messaging_window(last_interaction_at timestamptz) RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT last_interaction_at > now() - interval '24 hours' $$;
