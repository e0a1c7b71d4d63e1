-- Dashboard: customers with an order, by the number of sessions before their first order session
-- (the distribution behind median_visits_before_order.sql). One row per customer: their first session's.
SELECT first_order_session_number - 1 AS visits_before_order, count(*) AS customers
FROM sessions
WHERE session_number = 1 AND first_order_session_number IS NOT NULL
GROUP BY first_order_session_number
ORDER BY visits_before_order;
