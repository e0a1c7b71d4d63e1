-- Dashboard: session duration (minutes) in bins, for all sessions and for the sessions that come before
-- their customer's first order session (the sessions behind query_2.sql). A bin holds lower <= duration
-- < upper; bin 0 holds exactly 0 (one-event sessions); the last bin has no upper bound.
WITH bounds AS (
    SELECT ARRAY[0, 5, 10, 15, 20, 30, 45, 60, 90, 120]::double precision[] AS lower_bounds
),
first_order AS (
    SELECT customer_id, min(session_number) FILTER (WHERE has_order) AS first_order_session
    FROM sessions
    GROUP BY customer_id
),
per_bin AS (
    SELECT CASE WHEN s.duration_minutes = 0 THEN 0
                ELSE width_bucket(s.duration_minutes, (SELECT lower_bounds FROM bounds)) END AS bin,
           count(*) AS sessions,
           -- the comparison is NULL, so not counted, for customers without an order
           count(*) FILTER (WHERE s.session_number < f.first_order_session) AS sessions_before_order
    FROM sessions AS s
    JOIN first_order AS f USING (customer_id)
    GROUP BY 1
)
SELECT bin,
       CASE WHEN bin = 0 THEN 0 ELSE b.lower_bounds[bin] END AS lower_minutes,
       CASE WHEN bin = 0 THEN 0 ELSE b.lower_bounds[bin + 1] END AS upper_minutes,
       coalesce(per_bin.sessions, 0) AS sessions,
       coalesce(per_bin.sessions_before_order, 0) AS sessions_before_order
FROM generate_series(0, 10) AS bin
CROSS JOIN bounds AS b
LEFT JOIN per_bin USING (bin)
ORDER BY bin;
