-- Dashboard: per UTC day, sessions started, those with an order, placed_order events, and the share of
-- sessions with an order. Every day of the drawn window is listed, empty ones with zeros. Sessions and events
-- are read once, grouped by day (events: their orders, then the window's first and last, each a plain scan);
-- everything else works on those per-day rows.
--
-- The window is the bulk of the data, not its extremes: one event dated 0001 or 9999 would otherwise make
-- millions of empty days. Bulk = Tukey's far-out fences over the session start days: from the first quartile
-- minus 3 times (the interquartile range + 1 day) to the third quartile plus as much, so a dump's own first
-- and last days always stay in (quartiles, not extreme percentiles: a quarter of the sessions may be
-- outliers before the window moves). Kept within the data, within the dates Python can read, and at most
-- 1000 days long (the latest). Sessions and orders outside it are counted on every row (sessions_outside,
-- orders_outside, with the extreme session starts as text), so the page can say what it leaves out.
--
-- A day is partial when the data covers less than 23 hours of it (the dump starts or ends during it):
-- hours_covered is the part of the day between the first and the last event inside the window.
--
-- Events come from tb_events, or, for a publication that left tb_events out (run-all --engine spark --publish
-- sessions), from the per-day figures its run kept in published_event_days (a publication has one or the other).
WITH session_days AS MATERIALIZED (  -- per UTC day of a session start; MATERIALIZED: one scan of sessions
    SELECT (started_at AT TIME ZONE 'UTC')::date AS day, count(*) AS sessions,
           count(*) FILTER (WHERE has_order) AS sessions_with_order,
           min(started_at) AS first_start, max(started_at) AS last_start
    FROM sessions GROUP BY 1
),
quartiles AS (  -- the first and third quartile of the start days (percentile_disc, from the per-day counts)
    SELECT min(day) FILTER (WHERE running >= ceil(0.25 * total)) AS low,
           min(day) FILTER (WHERE running >= ceil(0.75 * total)) AS high
    FROM (SELECT day, sum(sessions) OVER (ORDER BY day) AS running, sum(sessions) OVER () AS total
          FROM session_days) AS cumulative
),
fences AS (  -- clamped first: date arithmetic near the ends of PostgreSQL's range would overflow
    SELECT greatest(greatest(low, date '0001-01-01') - least(3 * (high - low + 1), 3660), date '0001-01-01') AS low,
           least(least(high, date '9999-12-30') + least(3 * (high - low + 1), 3660), date '9999-12-30') AS high
    FROM quartiles
),
event_days AS (  -- the per-day event figures kept by a publication without tb_events (else none)
    SELECT day, orders, first_event, last_event FROM published_event_days
    WHERE run_id = (SELECT run_id FROM publications ORDER BY publication_id DESC LIMIT 1)
),
order_days AS (  -- placed_order events per UTC day
    SELECT ("timestamp" AT TIME ZONE 'UTC')::date AS day, count(*) AS orders
    FROM tb_events WHERE event_type = 'placed_order' GROUP BY 1
    UNION ALL
    SELECT day, orders FROM event_days WHERE orders > 0
),
widened AS (  -- the first and last day with a session start or an order inside the fences
    SELECT min(day) AS first_day, max(day) AS last_day
    FROM (SELECT day FROM session_days UNION ALL SELECT day FROM order_days) AS d, fences
    WHERE day BETWEEN fences.low AND fences.high
),
drawn AS (  -- the days drawn: at most the last 1000 of the widened span
    SELECT greatest(first_day, last_day - 999) AS first_day, last_day FROM widened
),
per_day AS (  -- per drawn day: sessions started, and those with an order
    SELECT day, sessions, sessions_with_order
    FROM session_days, drawn
    WHERE day BETWEEN drawn.first_day AND drawn.last_day
),
orders AS (  -- per drawn day: placed_order events
    SELECT day, sum(orders)::bigint AS orders
    FROM order_days, drawn
    WHERE day BETWEEN drawn.first_day AND drawn.last_day
    GROUP BY day
),
span AS MATERIALIZED (  -- the first and last event inside the window, as UTC timestamps
    -- the window's bounds as scalars (subqueries run once), so that the scan of tb_events only compares
    SELECT min(first_event) AT TIME ZONE 'UTC' AS first_event, max(last_event) AT TIME ZONE 'UTC' AS last_event
    FROM (SELECT min("timestamp") AS first_event, max("timestamp") AS last_event
          FROM tb_events
          WHERE "timestamp" >= (SELECT first_day::timestamp AT TIME ZONE 'UTC' FROM drawn)
            AND "timestamp" < (SELECT (last_day + 1)::timestamp AT TIME ZONE 'UTC' FROM drawn)
          UNION ALL
          SELECT first_event, last_event FROM event_days, drawn
          WHERE day BETWEEN drawn.first_day AND drawn.last_day) AS e
),
outside AS MATERIALIZED (  -- what lies outside the drawn days; MATERIALIZED: once, not once per day row
    SELECT (SELECT coalesce(sum(sessions), 0)::bigint FROM session_days, drawn
            WHERE day NOT BETWEEN drawn.first_day AND drawn.last_day) AS sessions_outside,
           (SELECT coalesce(sum(orders), 0)::bigint FROM order_days, drawn
            WHERE day NOT BETWEEN drawn.first_day AND drawn.last_day) AS orders_outside,
           (SELECT (min(first_start) AT TIME ZONE 'UTC')::text FROM session_days, drawn
            WHERE day < drawn.first_day) AS outside_first,
           (SELECT (max(last_start) AT TIME ZONE 'UTC')::text FROM session_days, drawn
            WHERE day > drawn.last_day) AS outside_last
),
days AS (  -- every drawn day, empty ones too
    SELECT generate_series(first_day, last_day, interval '1 day')::date AS day FROM drawn
)
SELECT days.day,
       coalesce(per_day.sessions, 0) AS sessions,
       coalesce(per_day.sessions_with_order, 0) AS sessions_with_order,
       coalesce(orders.orders, 0) AS orders,
       per_day.sessions_with_order::double precision / nullif(per_day.sessions, 0) AS share_with_order,
       greatest(0, extract(epoch FROM least(days.day + 1, span.last_event) - greatest(days.day, span.first_event))
                   / 3600)::double precision AS hours_covered,
       extract(epoch FROM least(days.day + 1, span.last_event) - greatest(days.day, span.first_event))
           < 23 * 3600 AS partial,
       outside.sessions_outside,
       outside.orders_outside,
       outside.outside_first,
       outside.outside_last
FROM days
CROSS JOIN span
CROSS JOIN outside
LEFT JOIN per_day USING (day)
LEFT JOIN orders USING (day)
ORDER BY days.day;
