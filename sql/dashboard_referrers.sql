-- Dashboard: sessions by referrer (a session's referrer is its first event's; none = '(direct)'):
-- sessions, customers, median and 90th-percentile duration, share of sessions with an order, mean events.
SELECT coalesce(referrer, '(direct)') AS referrer,
       count(*) AS sessions,
       count(DISTINCT customer_id) AS customers,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes) AS median_duration_minutes,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_minutes) AS p90_duration_minutes,
       avg(has_order::int)::double precision AS order_share,
       avg(event_count)::double precision AS mean_events
FROM sessions
GROUP BY coalesce(referrer, '(direct)')
ORDER BY sessions DESC, referrer;
