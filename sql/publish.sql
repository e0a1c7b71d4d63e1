-- Swap the result built by sessionize.sql into place. Run in one transaction: readers see the previous
-- tables or the new ones, never a mix, and wait at most for the renames, not for the build.
ALTER TABLE tb_events RENAME TO tb_events_old;
ALTER TABLE tb_events_next RENAME TO tb_events;
DROP TABLE tb_events_old;
ALTER INDEX tb_events_next_pkey RENAME TO tb_events_pkey;

ALTER TABLE sessions RENAME TO sessions_old;
ALTER TABLE sessions_next RENAME TO sessions;
DROP TABLE sessions_old;
ALTER INDEX sessions_next_pkey RENAME TO sessions_pkey;
