-- Dashboard: the funnel per session. For each step: sessions holding that step's event at all, and
-- sessions holding it and every earlier step's event (the funnel proper). Product visits are the event
-- types starting with 'visit_'. Sessions are grouped by (customer_id, increment), the integers that
-- session_id is made of ('<customer_id>_<increment>'): the same groups, hashed faster than the text.
-- A publication that left tb_events out (run-all --engine spark --publish sessions) has instead its run's
-- sessions counted per set of steps in published_session_steps (a publication has one or the other).
WITH per_session AS (
    SELECT 1::bigint AS sessions,
           bit_or(CASE WHEN event_type = 'page_view' THEN 1
                       WHEN event_type LIKE 'visit\_%' THEN 2
                       WHEN event_type = 'add_product_to_cart' THEN 4
                       WHEN event_type = 'placed_order' THEN 8
                       ELSE 0 END) AS steps  -- one bit per step held by the session
    FROM tb_events
    GROUP BY customer_id, increment
    UNION ALL
    SELECT sessions, steps FROM published_session_steps
    WHERE run_id = (SELECT run_id FROM publications ORDER BY publication_id DESC LIMIT 1)
),
counts AS (
    SELECT coalesce(sum(sessions), 0)::bigint AS all_sessions,
           coalesce(sum(sessions) FILTER (WHERE steps & 1 = 1), 0)::bigint AS s1,
           coalesce(sum(sessions) FILTER (WHERE steps & 2 = 2), 0)::bigint AS s2,
           coalesce(sum(sessions) FILTER (WHERE steps & 4 = 4), 0)::bigint AS s3,
           coalesce(sum(sessions) FILTER (WHERE steps & 8 = 8), 0)::bigint AS s4,
           coalesce(sum(sessions) FILTER (WHERE steps & 3 = 3), 0)::bigint AS t2,
           coalesce(sum(sessions) FILTER (WHERE steps & 7 = 7), 0)::bigint AS t3,
           coalesce(sum(sessions) FILTER (WHERE steps & 15 = 15), 0)::bigint AS t4
    FROM per_session
)
SELECT step, step_name, sessions_with_event, sessions_through_step
FROM counts
CROSS JOIN LATERAL (VALUES
    (0, 'session', all_sessions, all_sessions),
    (1, 'page_view', s1, s1),
    (2, 'visit_*', s2, t2),
    (3, 'add_product_to_cart', s3, t3),
    (4, 'placed_order', s4, t4)
) AS steps (step, step_name, sessions_with_event, sessions_through_step)
ORDER BY step;
