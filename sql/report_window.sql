-- The figures of `xccel report` (query_1.sql, query_2.sql, query_3.sql, report_counts.sql) over the
-- customers whose first session starts in the window: xccel.since and xccel.until, UTC calendar days, both
-- inclusive (empty = open). Sessions and events counted are those of these customers (events summed over their
-- sessions, so this needs no tb_events).
WITH bounds AS (
    SELECT nullif(current_setting('xccel.since', true), '')::date AS since,
           nullif(current_setting('xccel.until', true), '')::date AS until
), per_customer AS (
    SELECT customer_id,
           min(session_number) FILTER (WHERE has_order) AS first_order_session,
           min(started_at) AS first_started_at
    FROM sessions
    GROUP BY customer_id
), windowed AS (
    SELECT p.*
    FROM per_customer AS p, bounds AS b
    WHERE (b.since IS NULL OR p.first_started_at >= b.since::timestamp AT TIME ZONE 'UTC')
      AND (b.until IS NULL OR p.first_started_at < (b.until + 1)::timestamp AT TIME ZONE 'UTC')
), windowed_sessions AS (
    SELECT s.customer_id, s.session_number, s.duration_minutes, s.event_count, w.first_order_session
    FROM sessions AS s
    JOIN windowed AS w USING (customer_id)
)
SELECT (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY first_order_session - 1)
        FROM windowed WHERE first_order_session IS NOT NULL) AS median_visits_before_order,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes)
        FROM windowed_sessions WHERE session_number < first_order_session)
           AS median_session_duration_minutes_before_order,
       (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total_minutes)
        FROM (SELECT coalesce(sum(duration_minutes) FILTER (WHERE session_number < first_order_session), 0)
                  AS total_minutes
              FROM windowed_sessions
              WHERE first_order_session IS NOT NULL
              GROUP BY customer_id) AS per_buyer) AS median_total_minutes_before_order,
       (SELECT count(*) FROM windowed) AS customers,
       (SELECT count(*) FROM windowed WHERE first_order_session IS NOT NULL) AS customers_with_orders,
       (SELECT count(*) FROM windowed_sessions) AS sessions,
       (SELECT coalesce(sum(event_count), 0)::bigint FROM windowed_sessions) AS events;
