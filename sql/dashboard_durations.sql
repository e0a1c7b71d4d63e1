-- Dashboard: session duration (minutes) in bins of equal width, for all sessions and for the sessions that
-- come before their customer's first order session (the sessions behind query_2.sql). Equal widths, so a
-- bar's height compares with its neighbours' (unequal bins draw peaks that are not in the data).
-- Bin 0 holds exactly 0 (one-event sessions); bin k (1..24) holds 5(k-1) <= duration < 5k, without the
-- zeros; bin 25 holds every duration of 120 minutes or more (no upper bound).
WITH first_order AS (
    SELECT customer_id, min(session_number) FILTER (WHERE has_order) AS first_order_session
    FROM sessions
    GROUP BY customer_id
),
per_bin AS (
    SELECT CASE WHEN s.duration_minutes = 0 THEN 0
                ELSE least(floor(s.duration_minutes / 5), 24)::int + 1 END AS bin,
           count(*) AS sessions,
           -- the comparison is NULL, so not counted, for customers without an order
           count(*) FILTER (WHERE s.session_number < f.first_order_session) AS sessions_before_order
    FROM sessions AS s
    JOIN first_order AS f USING (customer_id)
    GROUP BY 1
)
SELECT bin,
       CASE WHEN bin = 0 THEN 0 ELSE (bin - 1) * 5 END AS lower_minutes,
       CASE WHEN bin = 0 THEN 0 WHEN bin = 25 THEN NULL ELSE bin * 5 END AS upper_minutes,
       coalesce(per_bin.sessions, 0) AS sessions,
       coalesce(per_bin.sessions_before_order, 0) AS sessions_before_order
FROM generate_series(0, 25) AS bin
LEFT JOIN per_bin USING (bin)
ORDER BY bin;
