-- xccel schema, version 6: the report window's "is it open" test evaluated once per query, not once per row.
-- Written `(SELECT report_window_is_open())`, the test is an initial plan: the planner runs it before the
-- scan and every row reads its result, where the bare call re-reads both settings for each row.

CREATE OR REPLACE FUNCTION buyer_minutes_before_order() RETURNS TABLE (customer_id bigint, total_minutes double precision)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    -- summed in session order: a sum of doubles depends on its order, and every engine must give these bits
    SELECT s.customer_id,
           coalesce(sum(s.duration_minutes ORDER BY s.session_number)
                    FILTER (WHERE s.session_number < s.first_order_session_number), 0)
    FROM sessions AS s
    WHERE s.first_order_session_number IS NOT NULL
      AND ((SELECT report_window_is_open())
           OR s.customer_id IN (SELECT w.customer_id FROM report_window_customers() AS w))
    GROUP BY s.customer_id
$$;
