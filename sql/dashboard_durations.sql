-- Dashboard: session duration (minutes) in bins of equal width, for all sessions and for the sessions that
-- come before their customer's first order session (the sample of median_session_duration_minutes_before_order.sql).
-- Equal widths, so a bar's height compares with its neighbours' (unequal bins draw peaks that are not in the data).
-- Bin 0 holds exactly 0 (one-event sessions); bin k (1..24) holds 5(k-1) <= duration < 5k, without the
-- zeros; bin 25 holds every duration of 120 minutes or more (no upper bound).
WITH per_bin AS (  -- per bin: all sessions, and those before their customer's first order session
    SELECT CASE WHEN duration_minutes = 0 THEN 0
                ELSE least(floor(duration_minutes / 5), 24)::int + 1 END AS bin,
           count(*) AS sessions,
           -- the comparison is NULL, so not counted, for customers without an order
           count(*) FILTER (WHERE session_number < first_order_session_number) AS sessions_before_order
    FROM sessions
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
