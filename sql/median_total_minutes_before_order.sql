-- median_total_minutes_before_order: over customers with at least one order, the median of the summed
-- duration_minutes of their sessions before the first order session (0 for first-session buyers).
-- The report window (xccel.since, xccel.until; unset or empty: every customer) is migration 0004's.
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total_minutes) AS median_total_minutes_before_order
FROM (
    -- summed in session order: a sum of doubles depends on its order, and every engine must give these bits
    SELECT coalesce(sum(duration_minutes ORDER BY session_number)
                    FILTER (WHERE session_number < first_order_session_number), 0)
               AS total_minutes
    FROM sessions
    WHERE first_order_session_number IS NOT NULL
      AND (report_window_is_open() OR customer_id IN (SELECT customer_id FROM report_window_customers()))
    GROUP BY customer_id
) AS per_buyer;
