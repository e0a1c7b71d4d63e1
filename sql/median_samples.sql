-- The three samples behind the medians of `xccel report`, as (sample, value, count) rows in value order. The
-- 95 % interval of each median is a pair of order statistics of its sample.
--   visits_before_order: per customer with an order, first order session - 1 (median_visits_before_order.sql)
--   session_duration_minutes_before_order: per session before its customer's first order session
--     (median_session_duration_minutes_before_order.sql)
--   total_minutes_before_order: per customer with an order, summed duration before that session
--     (median_total_minutes_before_order.sql; both read buyer_minutes_before_order(), migrations 0005 and 0006)
-- The report window (xccel.since, xccel.until; unset or empty: every customer) is migration 0004's.
-- `(SELECT report_window_is_open())`: a subquery, so the test runs once per query, not once per row.
WITH windowed_sessions AS (  -- the sessions of the customers in the report window
    SELECT customer_id, session_number, duration_minutes, first_order_session_number
    FROM sessions
    WHERE (SELECT report_window_is_open()) OR customer_id IN (SELECT customer_id FROM report_window_customers())
)
SELECT 'visits_before_order' AS sample, (first_order_session_number - 1)::double precision AS value, count(*) AS count
FROM windowed_sessions
WHERE session_number = 1 AND first_order_session_number IS NOT NULL
GROUP BY 2
UNION ALL
SELECT 'session_duration_minutes_before_order', duration_minutes, count(*)
FROM windowed_sessions
WHERE session_number < first_order_session_number
GROUP BY 2
UNION ALL
SELECT 'total_minutes_before_order', total_minutes, count(*)
FROM buyer_minutes_before_order()
GROUP BY 2
ORDER BY 1, 2;
