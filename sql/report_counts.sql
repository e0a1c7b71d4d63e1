-- The counts behind the metrics: customers with a sessionized event, those with an order, sessions, events.
SELECT (SELECT count(DISTINCT customer_id) FROM sessions) AS customers,
       (SELECT count(DISTINCT customer_id) FROM sessions WHERE has_order) AS customers_with_orders,
       (SELECT count(*) FROM sessions) AS sessions,
       (SELECT count(*) FROM tb_events) AS events;
