-- median_total_minutes_before_order: over customers with at least one order, the median of the summed
-- duration_minutes of their sessions before the first order session (0 for first-session buyers).
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total_minutes) AS median_total_minutes_before_order
FROM (
    SELECT customer_id,
           coalesce(sum(duration_minutes) FILTER (WHERE session_number < first_order_session), 0) AS total_minutes
    FROM (
        SELECT customer_id, session_number, duration_minutes,
               min(session_number) FILTER (WHERE has_order) OVER (PARTITION BY customer_id) AS first_order_session
        FROM sessions
    ) AS s
    WHERE first_order_session IS NOT NULL
    GROUP BY customer_id
) AS per_customer;
