-- median_visits_before_order: over customers with at least one order, the median number of sessions
-- before the session of their first order (0 when they ordered in their first session).
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY first_order_session - 1) AS median_visits_before_order
FROM (
    SELECT DISTINCT customer_id,
           min(session_number) FILTER (WHERE has_order) OVER (PARTITION BY customer_id) AS first_order_session
    FROM sessions
) AS per_customer
WHERE first_order_session IS NOT NULL;
