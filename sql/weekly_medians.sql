-- Weekly trend of the two medians of the old script (query_1.sql, query_2.sql), by the week (Monday, UTC)
-- in which a customer's first session starts, over customers whose first session starts in the window
-- (xccel.since, xccel.until: UTC days, inclusive; empty = open). The first and last weeks may be partial.
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
    SELECT p.*, date_trunc('week', p.first_started_at AT TIME ZONE 'UTC')::date AS week_start
    FROM per_customer AS p, bounds AS b
    WHERE (b.since IS NULL OR p.first_started_at >= b.since::timestamp AT TIME ZONE 'UTC')
      AND (b.until IS NULL OR p.first_started_at < (b.until + 1)::timestamp AT TIME ZONE 'UTC')
), visits AS (
    SELECT week_start,
           count(*) AS customers,
           count(first_order_session) AS customers_with_orders,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY first_order_session - 1)
               FILTER (WHERE first_order_session IS NOT NULL) AS median_visits_before_order
    FROM windowed
    GROUP BY week_start
), durations AS (
    SELECT w.week_start,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY s.duration_minutes)
               AS median_session_duration_minutes_before_order
    FROM windowed AS w
    JOIN sessions AS s USING (customer_id)
    WHERE s.session_number < w.first_order_session
    GROUP BY w.week_start
)
SELECT v.week_start, v.customers, v.customers_with_orders, v.median_visits_before_order,
       d.median_session_duration_minutes_before_order
FROM visits AS v
LEFT JOIN durations AS d USING (week_start)
ORDER BY v.week_start;
