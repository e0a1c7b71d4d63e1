-- Build tb_events_next (one row per sessionized event) from the session_events view of sessionize.sql:
-- run that file first, in the same session. The one definition of tb_events_next's rows. xccel runs this
-- file and sessionize_sessions.sql on two connections at once (each after its own sessionize.sql), or with
-- a session cap on one connection after sessionize_materialize.sql (see there); under psql, run them one
-- after the other.

-- tb_events has no landing page or referrer: do not read them from every payload (session_flags; once
-- sessionize_materialize.sql has kept the rows, they are read already and this changes nothing).
SELECT set_config('xccel.carry_landing', 'false', true);

DROP TABLE IF EXISTS tb_events_next;
CREATE TABLE tb_events_next (LIKE tb_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

-- Customers without new events keep their rows (nothing to copy on a full refresh).
INSERT INTO tb_events_next
SELECT * FROM tb_events
WHERE NOT (SELECT full_refresh FROM session_settings)
  AND customer_id NOT IN (SELECT customer_id FROM rebuild_customers);

INSERT INTO tb_events_next
SELECT event_id, event_type, customer_id, "timestamp", prev_timestamp,
       starts::int,
       extract(epoch FROM "timestamp" - prev_timestamp)::double precision,
       increment,
       customer_id || '_' || increment
FROM session_events;

-- The key after the bulk insert: one sorted build instead of row-by-row insertions.
ALTER TABLE tb_events_next ADD CONSTRAINT tb_events_next_pkey PRIMARY KEY (event_id);
