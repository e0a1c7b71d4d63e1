-- The three samples behind the medians of `xccel report`, as (sample, value, count) rows in value order,
-- over customers whose first session starts in the window (xccel.since, xccel.until: UTC days, inclusive;
-- empty = open). The 95 % interval of each median is a pair of order statistics of its sample.
--   visits_before_order: per customer with an order, first order session - 1 (query_1.sql)
--   session_duration_minutes_before_order: per session before its customer's first order session (query_2.sql)
--   total_minutes_before_order: per customer with an order, summed duration before that session (query_3.sql)
WITH bounds AS (
    SELECT nullif(current_setting('xccel.since', true), '')::date AS since,
           nullif(current_setting('xccel.until', true), '')::date AS until
), per_customer AS (
    SELECT customer_id,
           min(session_number) FILTER (WHERE has_order) AS first_order_session,
           min(started_at) AS first_started_at
    FROM sessions
    GROUP BY customer_id
), buyers AS (
    SELECT p.customer_id, p.first_order_session
    FROM per_customer AS p, bounds AS b
    WHERE p.first_order_session IS NOT NULL
      AND (b.since IS NULL OR p.first_started_at >= b.since::timestamp AT TIME ZONE 'UTC')
      AND (b.until IS NULL OR p.first_started_at < (b.until + 1)::timestamp AT TIME ZONE 'UTC')
), before_order AS (
    SELECT s.customer_id, s.duration_minutes
    FROM sessions AS s
    JOIN buyers AS b USING (customer_id)
    WHERE s.session_number < b.first_order_session
)
SELECT 'visits_before_order' AS sample, (first_order_session - 1)::double precision AS value, count(*) AS count
FROM buyers
GROUP BY 2
UNION ALL
SELECT 'session_duration_minutes_before_order', duration_minutes, count(*)
FROM before_order
GROUP BY 2
UNION ALL
SELECT 'total_minutes_before_order', total_minutes, count(*)
FROM (
    SELECT coalesce(sum(o.duration_minutes), 0) AS total_minutes
    FROM buyers AS b
    LEFT JOIN before_order AS o USING (customer_id)
    GROUP BY b.customer_id
) AS per_buyer
GROUP BY 2
ORDER BY 1, 2;
