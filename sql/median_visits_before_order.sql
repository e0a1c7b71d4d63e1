-- median_visits_before_order: over customers with at least one order, the median number of sessions before
-- the session of their first order (0 when they ordered in their first session). One row per customer: the
-- first session's (every customer has one), which carries first_order_session_number like all of theirs.
-- The report window (xccel.since, xccel.until; unset or empty: every customer) is migration 0004's.
-- `(SELECT report_window_is_open())`: a subquery, so the test runs once per query, not once per row.
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY first_order_session_number - 1) AS median_visits_before_order
FROM sessions
WHERE session_number = 1
  AND first_order_session_number IS NOT NULL
  AND ((SELECT report_window_is_open()) OR customer_id IN (SELECT customer_id FROM report_window_customers()));
