-- Keep the rows of sessionize.sql's session_events view once, in a temporary table, and point the view at
-- them: sessionize_events.sql and sessionize_sessions.sql, run after this file on the same connection, then
-- both read the kept rows, so the rules' sort and window passes (and, with a cap, the cut customers' extra
-- window pass) run once for both tables.
-- xccel takes this way with a session cap, and on a connection with no URL to open a second one from.
--
-- Under psql, in one session:
--   \i sessionize.sql               -- with xccel.carry_landing true (its default): the kept rows must carry
--                                   -- landing page and referrer, which sessionize_sessions.sql takes from them
--   \i sessionize_materialize.sql
--   \i sessionize_events.sql        -- its carry_landing false no longer changes what the view yields
--   \i sessionize_sessions.sql
-- sessionize.sql drops the view and this table first, so the four may be run again in the same order.

CREATE TEMP TABLE session_events_kept AS
SELECT * FROM session_events;

CREATE OR REPLACE TEMP VIEW session_events AS
SELECT * FROM session_events_kept;
