-- Build sessions_next (one row per session) from the session_events view of sessionize.sql: run that
-- file first, in the same session (see sessionize_events.sql, its twin). The one definition of
-- sessions_next's rows.

-- landing_page and referrer: read from the payloads (session_flags; sessionize_events.sql turns it off;
-- rows kept by sessionize_materialize.sql carry them already)
SELECT set_config('xccel.carry_landing', 'true', true);

DROP TABLE IF EXISTS sessions_next;
CREATE TABLE sessions_next (LIKE sessions INCLUDING DEFAULTS INCLUDING CONSTRAINTS);

-- Customers without new events keep their rows (nothing to copy on a full refresh).
INSERT INTO sessions_next
SELECT * FROM sessions
WHERE NOT (SELECT full_refresh FROM session_settings)
  AND customer_id NOT IN (SELECT customer_id FROM rebuild_customers);

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
FROM session_events
GROUP BY customer_id, increment;

-- The key after the bulk insert.
ALTER TABLE sessions_next ADD CONSTRAINT sessions_next_pkey PRIMARY KEY (session_id);
