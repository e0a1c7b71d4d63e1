-- median_session_duration_minutes_before_order: the median duration_minutes over all sessions that come
-- before their customer's first order session (customers who never ordered have a NULL
-- first_order_session_number, so none of their sessions counts).
-- The report window (xccel.since, xccel.until; unset or empty: every customer) is migration 0004's.
-- `(SELECT report_window_is_open())`: a subquery, so the test runs once per query, not once per row.
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes) AS median_session_duration_minutes_before_order
FROM sessions
WHERE session_number < first_order_session_number
  AND ((SELECT report_window_is_open()) OR customer_id IN (SELECT customer_id FROM report_window_customers()));
