-- Dashboard: the funnel per session. For each step: sessions holding that step's event at all, and
-- sessions holding it and every earlier step's event (the funnel proper). Product visits are the event
-- types starting with 'visit_'.
WITH per_session AS (
    SELECT session_id,
           bool_or(event_type = 'page_view') AS page_view,
           bool_or(event_type LIKE 'visit\_%') AS product_visit,
           bool_or(event_type = 'add_product_to_cart') AS add_to_cart,
           bool_or(event_type = 'placed_order') AS placed_order
    FROM tb_events
    GROUP BY session_id
)
SELECT step, step_name, sessions_with_event, sessions_through_step
FROM (
    SELECT count(*) AS all_sessions,
           count(*) FILTER (WHERE page_view) AS s1,
           count(*) FILTER (WHERE product_visit) AS s2,
           count(*) FILTER (WHERE add_to_cart) AS s3,
           count(*) FILTER (WHERE placed_order) AS s4,
           count(*) FILTER (WHERE page_view AND product_visit) AS t2,
           count(*) FILTER (WHERE page_view AND product_visit AND add_to_cart) AS t3,
           count(*) FILTER (WHERE page_view AND product_visit AND add_to_cart AND placed_order) AS t4
    FROM per_session
) AS c
CROSS JOIN LATERAL (VALUES
    (0, 'session', all_sessions, all_sessions),
    (1, 'page_view', s1, s1),
    (2, 'visit_*', s2, t2),
    (3, 'add_product_to_cart', s3, t3),
    (4, 'placed_order', s4, t4)
) AS steps (step, step_name, sessions_with_event, sessions_through_step)
ORDER BY step;
