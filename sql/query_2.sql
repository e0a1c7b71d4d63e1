-- median_session_duration_minutes_before_order: the median duration_minutes over all sessions that
-- come before their customer's first order session (customers who never ordered do not count).
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes) AS median_session_duration_minutes_before_order
FROM (
    SELECT duration_minutes, session_number,
           min(session_number) FILTER (WHERE has_order) OVER (PARTITION BY customer_id) AS first_order_session
    FROM sessions
) AS s
WHERE session_number < first_order_session;
