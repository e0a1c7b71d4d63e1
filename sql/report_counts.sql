-- The counts behind the metrics: customers with a sessionized event, those with an order, sessions, events.
-- Events are summed over sessions (each tb_events row belongs to exactly one session): the same count, and it
-- holds when a publication leaves tb_events out (run-all --engine spark --publish sessions).
SELECT (SELECT count(DISTINCT customer_id) FROM sessions) AS customers,
       (SELECT count(DISTINCT customer_id) FROM sessions WHERE has_order) AS customers_with_orders,
       (SELECT count(*) FROM sessions) AS sessions,
       (SELECT coalesce(sum(event_count), 0)::bigint FROM sessions) AS events;
