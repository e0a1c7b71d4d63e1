-- The counts behind the metrics: customers with a sessionized event, those with an order, their sessions and
-- their events. Each customer has exactly one session numbered 1. Events are summed over sessions (each
-- tb_events row belongs to exactly one session): the same count, and it holds when a publication leaves
-- tb_events out (run-all --engine spark --publish sessions).
-- The report window (xccel.since, xccel.until; unset or empty: every customer) is migration 0004's.
-- `(SELECT report_window_is_open())`: a subquery, so the test runs once per query, not once per row.
SELECT count(*) FILTER (WHERE session_number = 1) AS customers,
       count(*) FILTER (WHERE session_number = 1 AND first_order_session_number IS NOT NULL) AS customers_with_orders,
       count(*) AS sessions,
       coalesce(sum(event_count), 0)::bigint AS events
FROM sessions
WHERE (SELECT report_window_is_open()) OR customer_id IN (SELECT customer_id FROM report_window_customers());
