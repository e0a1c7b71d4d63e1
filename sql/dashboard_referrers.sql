-- Dashboard: sessions by referrer (a session's referrer is its first event's; none = '(direct)'):
-- sessions, median and 90th-percentile duration, share of sessions with an order, mean events per
-- session. (GET /metrics/referrers also counts distinct customers; the page does not show them, and
-- that count would cost this query half its time.)
SELECT coalesce(referrer, '(direct)') AS referrer,
       count(*) AS sessions,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes) AS median_duration_minutes,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_minutes) AS p90_duration_minutes,
       avg(has_order::int)::double precision AS order_share,
       avg(event_count)::double precision AS mean_events
FROM sessions
GROUP BY coalesce(referrer, '(direct)')
ORDER BY sessions DESC, referrer;
