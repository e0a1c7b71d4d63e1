-- Sessions by referrer: does where a session came from change how long it lasts and how often it ends in
-- an order? A session's referrer is that of its first event (sessions.referrer); sessions without one are
-- grouped as '(direct)'. Largest groups first; ties by referrer so the order is stable.
-- With xccel.since / xccel.until (UTC days, both inclusive; empty = open) only the sessions of customers whose
-- first session starts in that window count.
WITH bounds AS (
    SELECT nullif(current_setting('xccel.since', true), '')::date AS since,
           nullif(current_setting('xccel.until', true), '')::date AS until
)
SELECT coalesce(referrer, '(direct)') AS referrer,
       count(*) AS sessions,
       count(DISTINCT customer_id) AS customers,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_minutes) AS median_duration_minutes,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_minutes) AS p90_duration_minutes,
       avg(has_order::int)::double precision AS share_with_order,
       avg(event_count)::double precision AS mean_events_per_session
FROM sessions
WHERE (SELECT since IS NULL AND until IS NULL FROM bounds)  -- no window: nothing more to look up
   OR customer_id IN (
       SELECT first.customer_id
       FROM sessions AS first, bounds AS b
       WHERE first.session_number = 1
         AND (b.since IS NULL OR first.started_at >= b.since::timestamp AT TIME ZONE 'UTC')
         AND (b.until IS NULL OR first.started_at < (b.until + 1)::timestamp AT TIME ZONE 'UTC'))
GROUP BY coalesce(referrer, '(direct)')
ORDER BY sessions DESC, referrer;
