-- Build tb_events_next (one row per sessionized event) and sessions_next (one row per session) from the
-- session_events view of sessionize.sql: run that file first, in the same session.
--
-- One statement builds both tables from one pass over the sorted events: the events are flagged once
-- (kept by the statement, spilling to a temporary file when they outgrow work_mem), written to
-- tb_events_next, and grouped into sessions_next. Sorting them again for the sessions would cost a
-- second sort of every event.

DROP TABLE IF EXISTS tb_events_next;
CREATE TABLE tb_events_next (LIKE tb_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
DROP TABLE IF EXISTS sessions_next;
CREATE TABLE sessions_next (LIKE sessions INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

-- Customers without new events keep their rows (nothing to copy on a full refresh).
INSERT INTO tb_events_next
SELECT * FROM tb_events
WHERE NOT (SELECT full_refresh FROM session_settings)
  AND customer_id NOT IN (SELECT customer_id FROM rebuild_customers);
INSERT INTO sessions_next
SELECT * FROM sessions
WHERE NOT (SELECT full_refresh FROM session_settings)
  AND customer_id NOT IN (SELECT customer_id FROM rebuild_customers);

WITH flagged AS MATERIALIZED (  -- the rebuilt customers' events with their flags, computed once
    SELECT event_id, event_type, customer_id, "timestamp", prev_timestamp, starts, increment
    FROM session_events
),
events AS (
    INSERT INTO tb_events_next
    SELECT event_id, event_type, customer_id, "timestamp", prev_timestamp,
           starts::int,
           extract(epoch FROM "timestamp" - prev_timestamp)::double precision,
           increment,
           customer_id || '_' || increment
    FROM flagged
),
grouped AS (  -- one row per session; its first event is the one that starts it
    SELECT customer_id, increment,
           min("timestamp") AS started_at,
           max("timestamp") AS ended_at,
           count(*) AS event_count,
           bool_or(event_type = 'placed_order') AS has_order,
           min(event_id) FILTER (WHERE starts) AS first_event_id
    FROM flagged
    GROUP BY customer_id, increment
)
INSERT INTO sessions_next
SELECT g.customer_id || '_' || g.increment,
       g.customer_id,
       g.increment,
       g.started_at,
       g.ended_at,
       extract(epoch FROM g.ended_at - g.started_at)::double precision / 60,
       g.event_count,
       g.has_order,
       -- landing_page and referrer of the session's first event: one key lookup per session, so the
       -- sort carries no page at all
       nullif(e.payload -> 'event' ->> 'page', ''),
       nullif(e.payload -> 'event' ->> 'referrer', ''),
       -- first_order_session_number: the lowest session number with an order, over the customer's sessions
       min(CASE WHEN g.has_order THEN g.increment END) OVER (PARTITION BY g.customer_id)
FROM grouped g
JOIN raw_events e ON e.event_id = g.first_event_id;

-- The keys after the bulk inserts: one sorted build each instead of row-by-row insertions.
ALTER TABLE tb_events_next ADD CONSTRAINT tb_events_next_pkey PRIMARY KEY (event_id);
ALTER TABLE sessions_next ADD CONSTRAINT sessions_next_pkey PRIMARY KEY (session_id);
