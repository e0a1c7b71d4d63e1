-- Build tb_events_next and sessions_next from raw_events: the next result for `xccel load` to publish.
--
-- Parameters are custom settings (xccel.*), set by xccel with set_config; under psql, SET them first:
--   SET xccel.timeout_minutes = 30;       -- a gap of this many minutes or more starts a session
--   SET xccel.split_at_midnight = false;  -- a change of calendar date in xccel.timezone starts one
--   SET xccel.timezone = 'UTC';
--   SET xccel.split_on_referrer = false;  -- an event with a referrer other than its session's starts one
--   SET xccel.full_refresh = true;        -- false: rebuild only customers with raw_events.run_id > since_run_id
--   SET xccel.since_run_id = 0;
--
-- Per customer, events are ordered by ("timestamp", event_id). The rules decide which events start a
-- session; everything else (increment, session_id, the sessions rows) follows from those flags.

DROP TABLE IF EXISTS tb_events_next;
DROP TABLE IF EXISTS sessions_next;
DROP TABLE IF EXISTS pg_temp.rebuild_customers;
DROP TABLE IF EXISTS pg_temp.rebuilt_events;

-- The customers whose sessions are recomputed: all of them, or those with events newer than the last result.
CREATE TEMP TABLE rebuild_customers AS
SELECT DISTINCT customer_id
FROM raw_events
WHERE customer_id IS NOT NULL
  AND (coalesce(nullif(current_setting('xccel.full_refresh', true), ''), 'true')::boolean
       OR run_id > coalesce(nullif(current_setting('xccel.since_run_id', true), ''), '0')::bigint);

CREATE TEMP TABLE rebuilt_events AS
WITH settings AS (
    SELECT make_interval(mins => coalesce(nullif(current_setting('xccel.timeout_minutes', true), ''), '30')::int)
               AS timeout,
           coalesce(nullif(current_setting('xccel.split_at_midnight', true), ''), 'false')::boolean
               AS split_at_midnight,
           coalesce(nullif(current_setting('xccel.timezone', true), ''), 'UTC') AS tz,
           coalesce(nullif(current_setting('xccel.split_on_referrer', true), ''), 'false')::boolean
               AS split_on_referrer
),
ordered AS (
    SELECT e.event_id, e.event_type, e.customer_id, e."timestamp",
           lag(e."timestamp") OVER per_customer AS prev_timestamp,
           nullif(e.payload -> 'event' ->> 'referrer', '') AS referrer,
           nullif(e.payload -> 'event' ->> 'page', '') AS page
    FROM raw_events e
    WHERE e.customer_id IN (SELECT customer_id FROM rebuild_customers)
    WINDOW per_customer AS (PARTITION BY e.customer_id ORDER BY e."timestamp", e.event_id)
),
-- Rules that look only at the previous event: the customer's first event, inactivity, midnight.
gaps AS (
    SELECT o.*,
           s.split_on_referrer,
           (o.prev_timestamp IS NULL
            OR o."timestamp" - o.prev_timestamp >= s.timeout
            OR (s.split_at_midnight
                AND (o."timestamp" AT TIME ZONE s.tz)::date <> (o.prev_timestamp AT TIME ZONE s.tz)::date)
           ) AS gap_start
    FROM ordered o CROSS JOIN settings s
),
gap_sessions AS (
    SELECT g.*,
           count(*) FILTER (WHERE g.gap_start) OVER (PARTITION BY g.customer_id ORDER BY g."timestamp", g.event_id)
               AS gap_session,
           -- non-empty referrers seen so far, this event included (over all the customer's events)
           count(g.referrer) OVER (PARTITION BY g.customer_id ORDER BY g."timestamp", g.event_id) AS referrers_so_far
    FROM gaps g
),
-- The referrer rule: the session's referrer is that of its first event, and only an event carrying a
-- different referrer splits. So the referrer in force is the last non-empty one seen since the gap
-- session began (or none): the first row of its (gap session, referrers_so_far) group.
last_referrer AS (
    SELECT gs.*,
           first_value(gs.referrer) OVER (
               PARTITION BY gs.customer_id, gs.gap_session, gs.referrers_so_far
               ORDER BY gs."timestamp", gs.event_id) AS referrer_in_force
    FROM gap_sessions gs
),
flags AS (
    SELECT lr.*,
           (lr.gap_start
            OR (lr.split_on_referrer AND lr.referrer IS NOT NULL
                AND lr.referrer IS DISTINCT FROM lag(lr.referrer_in_force) OVER (
                    PARTITION BY lr.customer_id, lr.gap_session ORDER BY lr."timestamp", lr.event_id))
           ) AS starts
    FROM last_referrer lr
),
numbered AS (
    SELECT f.*,
           count(*) FILTER (WHERE f.starts) OVER (PARTITION BY f.customer_id ORDER BY f."timestamp", f.event_id)
               AS increment
    FROM flags f
)
SELECT event_id, event_type, customer_id, "timestamp", prev_timestamp,
       starts::int AS new_session,
       extract(epoch FROM "timestamp" - prev_timestamp)::double precision AS "time",
       increment::int AS increment,
       customer_id || '_' || increment AS session_id,
       referrer, page
FROM numbered;

CREATE TABLE tb_events_next (LIKE tb_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO tb_events_next
SELECT * FROM tb_events WHERE customer_id NOT IN (SELECT customer_id FROM rebuild_customers);
INSERT INTO tb_events_next
SELECT event_id, event_type, customer_id, "timestamp", prev_timestamp, new_session, "time", increment, session_id
FROM rebuilt_events;
ALTER TABLE tb_events_next ADD CONSTRAINT tb_events_next_pkey PRIMARY KEY (event_id);

CREATE TABLE sessions_next (LIKE sessions INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
INSERT INTO sessions_next
SELECT * FROM sessions WHERE customer_id NOT IN (SELECT customer_id FROM rebuild_customers);
INSERT INTO sessions_next
SELECT session_id,
       customer_id,
       increment AS session_number,
       min("timestamp") AS started_at,
       max("timestamp") AS ended_at,
       (extract(epoch FROM max("timestamp") - min("timestamp")) / 60)::double precision AS duration_minutes,
       count(*) AS event_count,
       bool_or(event_type = 'placed_order') AS has_order,
       min(page) FILTER (WHERE new_session = 1) AS landing_page,
       min(referrer) FILTER (WHERE new_session = 1) AS referrer
FROM rebuilt_events
GROUP BY customer_id, increment, session_id;
ALTER TABLE sessions_next ADD CONSTRAINT sessions_next_pkey PRIMARY KEY (session_id);

DROP TABLE pg_temp.rebuild_customers;
DROP TABLE pg_temp.rebuilt_events;
