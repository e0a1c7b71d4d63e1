-- Dashboard: session duration (minutes) in bins, for all sessions and for the sessions that come before
-- their customer's first order session (the sessions behind query_2.sql). A bin holds lower <= duration
-- < upper; bin 0 holds exactly 0 (one-event sessions); the last bin has no upper bound.
WITH bounds AS (
    SELECT ARRAY[0, 5, 10, 15, 20, 30, 45, 60, 90, 120]::double precision[] AS lower_bounds
),
binned AS (
    SELECT CASE WHEN s.duration_minutes = 0 THEN 0
                ELSE width_bucket(s.duration_minutes, b.lower_bounds) END AS bin,
           s.session_number < s.first_order_session AS before_order
    FROM (
        SELECT duration_minutes, session_number,
               min(session_number) FILTER (WHERE has_order) OVER (PARTITION BY customer_id) AS first_order_session
        FROM sessions
    ) AS s
    CROSS JOIN bounds AS b
)
SELECT bin,
       CASE WHEN bin = 0 THEN 0 ELSE b.lower_bounds[bin] END AS lower_minutes,
       CASE WHEN bin = 0 THEN 0 ELSE b.lower_bounds[bin + 1] END AS upper_minutes,
       count(binned.bin) AS sessions,
       count(binned.bin) FILTER (WHERE binned.before_order) AS sessions_before_order
FROM generate_series(0, 10) AS bin
CROSS JOIN bounds AS b
LEFT JOIN binned USING (bin)
GROUP BY bin, b.lower_bounds
ORDER BY bin;
