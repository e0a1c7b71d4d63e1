-- Build tb_events_next (one row per sessionized event) and sessions_next (one row per session) from the
-- session_events view of sessionize.sql, on one connection: run that file first, in the same session.
-- (sessionize_events.sql and sessionize_sessions.sql build the same tables on two connections at once.)
--
-- One statement builds both tables from one pass over the session_events view: the flagged events are
-- kept by the statement (spilling to a temporary file when they outgrow work_mem), written to
-- tb_events_next and grouped into sessions_next, so nothing is sorted or capped twice. xccel takes this
-- way with a session cap, whose rule_flags and cuts the two-connection way would compute on both.

-- landing_page and referrer: read from the payloads (session_flags)
SELECT set_config('xccel.carry_landing', 'true', true);

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
    SELECT event_id, event_type, customer_id, "timestamp", prev_timestamp, starts, increment, page, referrer
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
)
INSERT INTO sessions_next
SELECT customer_id || '_' || increment,
       customer_id,
       increment,
       min("timestamp"),
       max("timestamp"),
       extract(epoch FROM max("timestamp") - min("timestamp"))::double precision / 60,
       count(*),
       bool_or(event_type = 'placed_order'),
       min(page) FILTER (WHERE starts),  -- of the session's first event: the one that starts it
       min(referrer) FILTER (WHERE starts),
       -- first_order_session_number: the lowest session number with an order, over the customer's sessions
       min(CASE WHEN bool_or(event_type = 'placed_order') THEN increment END) OVER (PARTITION BY customer_id)
FROM flagged
GROUP BY customer_id, increment;

-- The keys after the bulk inserts: one sorted build each instead of row-by-row insertions.
ALTER TABLE tb_events_next ADD CONSTRAINT tb_events_next_pkey PRIMARY KEY (event_id);
ALTER TABLE sessions_next ADD CONSTRAINT sessions_next_pkey PRIMARY KEY (session_id);
