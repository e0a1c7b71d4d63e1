-- xccel schema, version 4: each session carries its customer's first order session (written by the sessions
-- build, so that every metric reads it instead of working it out again), and the report window is defined
-- once, here, for every SQL file that takes it.

-- sessions.first_order_session_number: the session_number of the customer's first session with an order, the
-- same on each of their sessions; NULL for a customer without an order. Filled here for a result published
-- (and one staged, not yet published: load publishes sessions_next as it is) before this version.
DO $$
DECLARE
    result_table text;
BEGIN
    FOREACH result_table IN ARRAY ARRAY['sessions', 'sessions_next'] LOOP
        CONTINUE WHEN to_regclass(result_table) IS NULL;
        EXECUTE format('ALTER TABLE %I ADD COLUMN first_order_session_number integer', result_table);
        EXECUTE format(
            'UPDATE %1$I AS s SET first_order_session_number = f.first_order_session_number
             FROM (SELECT customer_id, min(session_number) FILTER (WHERE has_order) AS first_order_session_number
                   FROM %1$I GROUP BY customer_id) AS f
             WHERE f.customer_id = s.customer_id AND f.first_order_session_number IS NOT NULL',
            result_table);
    END LOOP;
END
$$;

-- The report window (`report --since/--until`, the API's since/until): the customers whose first session
-- starts on the UTC calendar days xccel.since .. xccel.until, both inclusive; an unset or empty bound is open.
-- SQL functions (inlined by the planner), so that every file that takes the window reads this one definition,
-- also under psql. They name `sessions` unqualified: it is found at each call, after every publication's swap.

-- true when neither bound is set: a file can then skip looking up the customers (a one-time filter).
CREATE FUNCTION report_window_is_open() RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT nullif(current_setting('xccel.since', true), '') IS NULL
       AND nullif(current_setting('xccel.until', true), '') IS NULL
$$;

-- The customers in the window, with the start of their first session.
CREATE FUNCTION report_window_customers() RETURNS TABLE (customer_id bigint, first_started_at timestamptz)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT s.customer_id, s.started_at
    FROM sessions AS s,
         (SELECT nullif(current_setting('xccel.since', true), '')::date AS since,
                 nullif(current_setting('xccel.until', true), '')::date AS until) AS bounds
    WHERE s.session_number = 1
      AND (bounds.since IS NULL OR s.started_at >= bounds.since::timestamp AT TIME ZONE 'UTC')
      AND (bounds.until IS NULL OR s.started_at < (bounds.until + 1)::timestamp AT TIME ZONE 'UTC')
$$;
