-- xccel schema, version 5: the per-buyer total behind median_total_minutes_before_order, defined once, here,
-- for the median (median_total_minutes_before_order.sql) and its sample (median_samples.sql).

-- Per customer in the report window (migration 0004) with at least one order: the summed duration_minutes of
-- the sessions before their first order session (0 for first-session buyers). A SQL function (inlined by the
-- planner) naming `sessions` unqualified, so it reads the current publication after every swap, also under psql.
CREATE FUNCTION buyer_minutes_before_order() RETURNS TABLE (customer_id bigint, total_minutes double precision)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    -- summed in session order: a sum of doubles depends on its order, and every engine must give these bits
    SELECT s.customer_id,
           coalesce(sum(s.duration_minutes ORDER BY s.session_number)
                    FILTER (WHERE s.session_number < s.first_order_session_number), 0)
    FROM sessions AS s
    WHERE s.first_order_session_number IS NOT NULL
      AND (report_window_is_open() OR s.customer_id IN (SELECT w.customer_id FROM report_window_customers() AS w))
    GROUP BY s.customer_id
$$;
