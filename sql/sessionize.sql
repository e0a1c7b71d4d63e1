-- Build tb_events_next and sessions_next from raw_events: the next result for `xccel load` to publish.
--
-- Parameters are custom settings (xccel.*), set by xccel with set_config; under psql, SET them first:
--   SET xccel.timeout_minutes = 30;       -- a gap of this many minutes or more starts a session
--   SET xccel.split_at_midnight = false;  -- a change of calendar date in xccel.timezone starts one
--   SET xccel.timezone = 'UTC';
--   SET xccel.split_on_referrer = false;  -- an event carrying a referrer other than its session's starts one
--   SET xccel.max_session_hours = '';     -- e.g. 2: cut sessions at 2 hours ('' = no cap)
--   SET xccel.full_refresh = true;        -- false: rebuild only customers with raw_events.run_id > since_run_id
--   SET xccel.since_run_id = 0;
--   SET xccel.carry_landing = true;       -- read landing page and referrer out of the payloads (for sessions:
--                                         -- sessionize_events.sql turns it off, sessionize_sessions.sql on)
--   SET timezone_abbreviations = 'Default';  -- the abbreviations the midnight rule's zone names are read with
--                                         -- (xccel sets it for its own transaction: see zone_settings below)
-- Then, in the same session (the temp objects are per session), build the two tables from the
-- session_events view below, one way or the other:
--   one connection (xccel's way with a session cap): this file with carry_landing true, then
--     sessionize_materialize.sql (keeps the view's rows once), sessionize_events.sql, sessionize_sessions.sql;
--   two connections (xccel's way without a cap: two cores, each sorting): sessionize_events.sql on one and
--     sessionize_sessions.sql on the other, each after its own run of this file.
-- Every file may be run again in the same session, in the same order.
--
-- Per customer, events are ordered by ("timestamp", event_id); every window below uses that one order,
-- so PostgreSQL sorts the events once. The rules decide which events start a session; increment,
-- session_id and the sessions rows follow from those flags. The cap comes last: it only cuts inside
-- the sessions the other rules made (see session_cuts), and only the customers it cuts are sorted again.
-- A rule that is off costs nothing: its work sits behind a one-time filter on its setting.

DROP VIEW IF EXISTS pg_temp.session_events;
DROP TABLE IF EXISTS pg_temp.session_events_kept;  -- sessionize_materialize.sql's, read by that view
DROP VIEW IF EXISTS pg_temp.session_flags;
DROP TABLE IF EXISTS pg_temp.session_settings;
DROP TABLE IF EXISTS pg_temp.rebuild_customers;
DROP TABLE IF EXISTS pg_temp.session_cuts;
DROP TABLE IF EXISTS pg_temp.long_session_events;
DROP TABLE IF EXISTS pg_temp.rule_flags;
DROP TABLE IF EXISTS pg_temp.zone_settings;
DROP FUNCTION IF EXISTS pg_temp.local_day(timestamptz);

CREATE TEMP TABLE session_settings AS
SELECT make_interval(mins => coalesce(nullif(current_setting('xccel.timeout_minutes', true), ''), '30')::int)
           AS timeout,
       coalesce(nullif(current_setting('xccel.split_at_midnight', true), ''), 'false')::boolean
           AS split_at_midnight,
       coalesce(nullif(current_setting('xccel.timezone', true), ''), 'UTC') AS tz,
       coalesce(nullif(current_setting('xccel.split_on_referrer', true), ''), 'false')::boolean
           AS split_on_referrer,
       -- at least a microsecond, the timestamps' step: a cap that rounds to zero would make the cuts'
       -- recursion find its own start again, for ever (and an event at the start's microsecond is not after it)
       CASE WHEN nullif(current_setting('xccel.max_session_hours', true), '') IS NOT NULL
            THEN greatest(make_interval(secs => current_setting('xccel.max_session_hours')::double precision * 3600),
                          interval '1 microsecond') END
           AS cap,
       coalesce(nullif(current_setting('xccel.full_refresh', true), ''), 'true')::boolean AS full_refresh,
       coalesce(nullif(current_setting('xccel.since_run_id', true), ''), '0')::bigint AS since_run_id;

-- The midnight rule's calendar day where the zone's name is also one of PostgreSQL's time zone abbreviations
-- ('CET', 'EET', 'MET', 'WET'): AT TIME ZONE reads such a name as the abbreviation's fixed offset, without
-- the zone's summer time, while the TimeZone setting reads zone names only. A function per event costs more,
-- so every other name keeps AT TIME ZONE, as do UTC, UCT, GMT and Zulu (UTC either way) and EST, MST and HST
-- (fixed offsets in this century either way; the Spark job reads these three as fixed offsets too).
-- All of this holds for the Default abbreviation set (timezone_abbreviations), which xccel sets for the build:
-- another set (Australia's EST is UTC+10) would change what a zone's name means here.
CREATE TEMP TABLE zone_settings AS
SELECT (SELECT split_at_midnight FROM session_settings)
       AND lower(tz) NOT IN ('utc', 'uct', 'gmt', 'zulu', 'est', 'mst', 'hst')
       AND lower(tz) IN (SELECT lower(abbrev) FROM pg_timezone_abbrevs) AS through_setting
FROM session_settings;
DO $$
BEGIN
    EXECUTE format('CREATE FUNCTION pg_temp.local_day(timestamptz) RETURNS date LANGUAGE sql STABLE'
                   ' SET timezone = %L AS ''SELECT $1::date''',
                   (SELECT CASE WHEN z.through_setting THEN s.tz ELSE 'UTC' END
                    FROM pg_temp.session_settings s, pg_temp.zone_settings z));
END
$$;

-- Incremental runs: the customers with events newer than the last result (empty on a full refresh).
CREATE TEMP TABLE rebuild_customers AS
SELECT DISTINCT customer_id
FROM raw_events
WHERE customer_id IS NOT NULL
  AND NOT (SELECT full_refresh FROM session_settings)
  AND run_id > (SELECT since_run_id FROM session_settings);

-- Each rebuilt event with `starts` (the timeout, midnight and referrer rules) and `increment` (the
-- running count of starts). Two branches, one per setting of the referrer rule; the other is switched
-- off by its one-time filter, so the default pays for two window passes and the referrer rule for three.
CREATE TEMP VIEW session_flags AS
WITH scope AS NOT MATERIALIZED (  -- adds: the rebuilt customers' events, with referrer, page and day where needed
    SELECT e.event_id, e.event_type, e.customer_id, e."timestamp",
           -- read from the payload only where needed: sessions_next takes both from each session's
           -- first event, tb_events_next only needs referrers for the referrer rule
           CASE WHEN (SELECT split_on_referrer FROM session_settings)
                     OR (SELECT coalesce(nullif(current_setting('xccel.carry_landing', true), ''), 'true')::boolean)
                THEN nullif(e.payload -> 'event' ->> 'referrer', '') END AS referrer,
           CASE WHEN (SELECT coalesce(nullif(current_setting('xccel.carry_landing', true), ''), 'true')::boolean)
                THEN nullif(e.payload -> 'event' ->> 'page', '') END AS page,
           -- the calendar day in the midnight rule's zone, converted once per event (lag carries it)
           CASE WHEN (SELECT split_at_midnight FROM session_settings)
                THEN CASE WHEN (SELECT through_setting FROM zone_settings) THEN pg_temp.local_day(e."timestamp")
                          ELSE (e."timestamp" AT TIME ZONE (SELECT tz FROM session_settings))::date END
           END AS local_day
    FROM raw_events e
    WHERE e.customer_id IS NOT NULL
      AND ((SELECT full_refresh FROM session_settings)
           OR e.customer_id IN (SELECT customer_id FROM rebuild_customers))
    OFFSET 0  -- take referrer and page out of the payload here, so the sort carries two short texts
),
with_previous AS (  -- adds: position in the customer's order, prev_timestamp, prev_local_day
    SELECT s.*,
           row_number() OVER per_customer AS position,
           lag(s."timestamp") OVER per_customer AS prev_timestamp,
           lag(s.local_day) OVER per_customer AS prev_local_day
    FROM scope s
    WINDOW per_customer AS (PARTITION BY s.customer_id ORDER BY s."timestamp", s.event_id)
),
-- Rules that look only at the previous event: the customer's first event, inactivity, midnight.
gaps AS NOT MATERIALIZED (  -- adds: gap_start, a session start by those rules
    SELECT w.*,
           (w.prev_timestamp IS NULL
            OR w."timestamp" - w.prev_timestamp >= (SELECT timeout FROM session_settings)
            OR w.local_day IS DISTINCT FROM w.prev_local_day  -- both NULL when the midnight rule is off
           ) AS gap_start
    FROM with_previous w
),
without_referrer_rule AS (  -- adds: starts = gap_start, increment (referrer rule off)
    SELECT g.event_id, g.event_type, g.customer_id, g."timestamp", g.prev_timestamp, g.gap_start AS starts,
           count(*) FILTER (WHERE g.gap_start) OVER (
               PARTITION BY g.customer_id ORDER BY g."timestamp", g.event_id ROWS UNBOUNDED PRECEDING
           ) AS increment,
           g.referrer, g.page
    FROM gaps g
    WHERE NOT (SELECT split_on_referrer FROM session_settings)
),
-- The referrer rule. A session's referrer is that of its first event, and an event carrying another
-- one starts a new session, so inside a gap session the referrer in force before an event is that of
-- the last earlier event that either began the gap session or carried a referrer (marked below).
-- The gap session's first event is always marked, so that event is never in an earlier gap session.
-- Its referrer comes out of one running max over "position, referrer" (fixed-width position first,
-- compared bytewise), so no pass has to keep a customer's events to look back at them.
referrer_in_force AS (  -- adds: mark, the position and referrer of the last marked event before this one
    SELECT g.*,
           max((lpad(g.position::text, 19, '0') || coalesce(g.referrer, '')) COLLATE "C")
               FILTER (WHERE g.gap_start OR g.referrer IS NOT NULL) OVER (
               PARTITION BY g.customer_id ORDER BY g."timestamp", g.event_id
               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
           ) AS mark
    FROM gaps g
    WHERE (SELECT split_on_referrer FROM session_settings)
),
referrer_starts AS (  -- adds: starts, a gap start or an arrival with another referrer than the one in force
    SELECT r.*,
           (r.gap_start
            OR (r.referrer IS NOT NULL AND r.referrer IS DISTINCT FROM nullif(substr(r.mark, 20), ''))
           ) AS starts
    FROM referrer_in_force r
),
with_referrer_rule AS (  -- adds: increment (referrer rule on)
    SELECT r.event_id, r.event_type, r.customer_id, r."timestamp", r.prev_timestamp, r.starts,
           count(*) FILTER (WHERE r.starts) OVER (
               PARTITION BY r.customer_id ORDER BY r."timestamp", r.event_id ROWS UNBOUNDED PRECEDING
           ) AS increment,
           r.referrer, r.page
    FROM referrer_starts r
)
SELECT * FROM without_referrer_rule
UNION ALL
SELECT * FROM with_referrer_rule;

-- The cap (xccel.max_session_hours): inside each session the rules made, the first event at least
-- `cap` after the start of the current session starts the next one, and so on from that event.
-- With a cap, the rules' flags are computed once and kept; without one, rule_flags stays empty.
CREATE TEMP TABLE rule_flags AS
SELECT * FROM session_flags
WHERE (SELECT cap FROM session_settings) IS NOT NULL;

-- Every cut lies at least `cap` after the start of its rule session: only sessions at least `cap` long,
-- and in them only the events at least `cap` after the start, are looked at.
CREATE TEMP TABLE long_session_events AS
WITH long_sessions AS (  -- the rule sessions at least `cap` long, with their start
    SELECT customer_id, increment, min("timestamp") AS session_started_at
    FROM rule_flags
    GROUP BY customer_id, increment
    HAVING max("timestamp") - min("timestamp") >= (SELECT cap FROM session_settings)
)
SELECT r.customer_id, r.increment, l.session_started_at, r."timestamp", r.event_id
FROM rule_flags r
JOIN long_sessions l USING (customer_id, increment)
WHERE r."timestamp" - l.session_started_at >= (SELECT cap FROM session_settings);
CREATE INDEX ON long_session_events (customer_id, increment, "timestamp", event_id);

-- One step per cut: from each cut, an index probe finds the next one, so the work grows with the
-- number of cuts, not with the number of events in a long session.
CREATE TEMP TABLE session_cuts AS
WITH RECURSIVE cuts (customer_id, increment, started_at, event_id) AS (  -- each cut: the start of a piece
    SELECT customer_id, increment, min(session_started_at), NULL::bigint
    FROM long_session_events
    GROUP BY customer_id, increment
    UNION ALL
    SELECT c.customer_id, c.increment, next_start."timestamp", next_start.event_id
    FROM cuts c
    CROSS JOIN LATERAL (
        SELECT l."timestamp", l.event_id
        FROM long_session_events l
        WHERE l.customer_id = c.customer_id AND l.increment = c.increment
          AND l."timestamp" >= c.started_at + (SELECT cap FROM session_settings)
        ORDER BY l."timestamp", l.event_id
        LIMIT 1
    ) AS next_start
)
SELECT customer_id, started_at AS "timestamp", event_id
FROM cuts
WHERE event_id IS NOT NULL;
ANALYZE session_cuts;

-- The rebuilt customers' events: without a cap, the flags (the other branches are switched off); with
-- one, the kept flags, and for the customers with a cut a running count of the cuts so far moves
-- their later sessions up (one more window pass, over those customers' events only).
CREATE TEMP VIEW session_events AS
SELECT f.event_id, f.event_type, f.customer_id, f."timestamp", f.prev_timestamp, f.referrer, f.page,
       f.starts, f.increment
FROM session_flags f
WHERE (SELECT cap FROM session_settings) IS NULL
UNION ALL
SELECT r.event_id, r.event_type, r.customer_id, r."timestamp", r.prev_timestamp, r.referrer, r.page,
       r.starts, r.increment
FROM rule_flags r
WHERE r.customer_id NOT IN (SELECT customer_id FROM session_cuts)
UNION ALL
SELECT r.event_id, r.event_type, r.customer_id, r."timestamp", r.prev_timestamp, r.referrer, r.page,
       r.starts OR c.event_id IS NOT NULL,
       r.increment + count(c.event_id) OVER (
           PARTITION BY r.customer_id ORDER BY r."timestamp", r.event_id ROWS UNBOUNDED PRECEDING
       )
FROM rule_flags r
LEFT JOIN session_cuts c ON c.event_id = r.event_id
WHERE r.customer_id IN (SELECT customer_id FROM session_cuts);
