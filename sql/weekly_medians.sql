-- Weekly trend of median_visits_before_order and median_session_duration_minutes_before_order, by the week
-- (Monday, UTC) in which a customer's first session starts, over the customers in the report window
-- (xccel.since, xccel.until; unset or empty: every customer; migration 0004). The first and last weeks may be
-- partial.
-- customer_weeks is MATERIALIZED: inlined, the planner would compute the week in the join, once per session.
WITH customer_weeks AS MATERIALIZED (  -- each windowed customer's week of first session, once per customer
    SELECT customer_id, date_trunc('week', first_started_at AT TIME ZONE 'UTC')::date AS week_start
    FROM report_window_customers()
), weekly_sessions AS (  -- each windowed customer's sessions, with that week
    SELECT w.week_start, s.session_number, s.duration_minutes, s.first_order_session_number
    FROM customer_weeks AS w
    JOIN sessions AS s USING (customer_id)
), visits AS (  -- per week: customers (one session 1 each), buyers, median sessions before the order
    SELECT week_start,
           count(*) AS customers,
           count(first_order_session_number) AS customers_with_orders,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY first_order_session_number - 1)
               FILTER (WHERE first_order_session_number IS NOT NULL) AS median_visits_before_order
    FROM weekly_sessions
    WHERE session_number = 1
    GROUP BY week_start
), durations AS (  -- per week: the median duration of the sessions before a first order
    SELECT week_start,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes) AS median_session_duration_minutes_before_order
    FROM weekly_sessions
    WHERE session_number < first_order_session_number
    GROUP BY week_start
)
SELECT v.week_start, v.customers, v.customers_with_orders, v.median_visits_before_order,
       d.median_session_duration_minutes_before_order
FROM visits AS v
LEFT JOIN durations AS d USING (week_start)
ORDER BY v.week_start;
