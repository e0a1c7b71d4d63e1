-- Dashboard: customers with an order, by the number of sessions before their first order session
-- (the distribution behind median_visits_before_order, query_1.sql).
SELECT first_order_session - 1 AS visits_before_order, count(*) AS customers
FROM (
    SELECT customer_id, min(session_number) FILTER (WHERE has_order) AS first_order_session
    FROM sessions
    GROUP BY customer_id
) AS per_customer
WHERE first_order_session IS NOT NULL
GROUP BY first_order_session
ORDER BY visits_before_order;
