-- Dashboard: sessions by referrer (a session's referrer is its first event's; none = '(direct)'):
-- sessions, median and 90th-percentile duration, share of sessions with an order with its 95 % Wilson
-- score interval, mean events per session. (GET /metrics/referrers also counts distinct customers; the
-- page does not show them, and that count would cost this query half its time.)
-- Wilson, not the normal approximation: it stays inside [0, 1] and honest for small groups and rates near
-- 0 or 1. z = 1.959964 (the 97.5th percentile of the standard normal).
WITH per_referrer AS (
    SELECT coalesce(referrer, '(direct)') AS referrer,
           count(*) AS sessions,
           count(*) FILTER (WHERE has_order) AS sessions_with_order,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes) AS median_duration_minutes,
           percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_minutes) AS p90_duration_minutes,
           avg(event_count)::double precision AS mean_events
    FROM sessions
    GROUP BY coalesce(referrer, '(direct)')
),
shares AS (
    SELECT *,
           sessions_with_order::double precision / sessions AS order_share,
           1.959964::double precision AS z
    FROM per_referrer
)
SELECT referrer,
       sessions,
       sessions_with_order,
       median_duration_minutes,
       p90_duration_minutes,
       order_share,
       greatest(0, (order_share + z * z / (2 * sessions)
                    - z * sqrt(order_share * (1 - order_share) / sessions + z * z / (4.0 * sessions * sessions)))
                   / (1 + z * z / sessions)) AS order_share_low,
       least(1, (order_share + z * z / (2 * sessions)
                 + z * sqrt(order_share * (1 - order_share) / sessions + z * z / (4.0 * sessions * sessions)))
                / (1 + z * z / sessions)) AS order_share_high,
       mean_events
FROM shares
ORDER BY sessions DESC, referrer;
