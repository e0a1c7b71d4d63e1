-- Sessions by referrer: does where a session came from change how long it lasts and how often it ends in
-- an order? A session's referrer is that of its first event (sessions.referrer); sessions without one are
-- grouped as '(direct)'. Largest groups first; ties by referrer so the order is stable. The one referrer
-- query: `report --by referrer`, GET /metrics/referrers and the dashboard (which adds the Wilson interval of
-- share_with_order in Python, xccel_cli/conversion.py).
-- The report window (xccel.since, xccel.until; unset or empty: every customer) is migration 0004's: only the
-- sessions of the customers in it count.
-- `(SELECT report_window_is_open())`: a subquery, so the test runs once per query, not once per row.
SELECT coalesce(referrer, '(direct)') AS referrer,
       count(*) AS sessions,
       count(DISTINCT customer_id) AS customers,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes) AS median_duration_minutes,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_minutes) AS p90_duration_minutes,
       avg(has_order::int)::double precision AS share_with_order,
       avg(event_count)::double precision AS mean_events_per_session
FROM sessions
WHERE (SELECT report_window_is_open()) OR customer_id IN (SELECT customer_id FROM report_window_customers())
GROUP BY coalesce(referrer, '(direct)')
ORDER BY sessions DESC, referrer;
