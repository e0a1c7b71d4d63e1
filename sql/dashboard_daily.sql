-- Dashboard: per UTC day, sessions started, those with an order, placed_order events, and the share of
-- sessions with an order. Every day between the first and the last is listed, empty ones with zeros.
WITH per_day AS (
    SELECT (started_at AT TIME ZONE 'UTC')::date AS day,
           count(*) AS sessions,
           count(*) FILTER (WHERE has_order) AS sessions_with_order
    FROM sessions
    GROUP BY 1
),
orders AS (
    SELECT ("timestamp" AT TIME ZONE 'UTC')::date AS day, count(*) AS orders
    FROM tb_events
    WHERE event_type = 'placed_order'
    GROUP BY 1
),
days AS (
    SELECT generate_series(min(day), max(day), interval '1 day')::date AS day
    FROM (SELECT day FROM per_day UNION ALL SELECT day FROM orders) AS d
)
SELECT days.day,
       coalesce(per_day.sessions, 0) AS sessions,
       coalesce(per_day.sessions_with_order, 0) AS sessions_with_order,
       coalesce(orders.orders, 0) AS orders,
       per_day.sessions_with_order::double precision / nullif(per_day.sessions, 0) AS order_share
FROM days
LEFT JOIN per_day USING (day)
LEFT JOIN orders USING (day)
ORDER BY days.day;
