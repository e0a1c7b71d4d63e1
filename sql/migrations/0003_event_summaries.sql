-- xccel schema, version 3: what the readers take from tb_events, kept per run for a publication that leaves
-- tb_events out (run-all --engine spark --publish sessions: the events stay in the warehouse). Rows belong to
-- the run whose result they describe; readers use those of the newest publication's run, so they change with
-- the swap. A publication with tb_events has none.
CREATE TABLE published_event_days (
    run_id       bigint      NOT NULL,
    day          date        NOT NULL,  -- UTC
    events       bigint      NOT NULL,
    orders       bigint      NOT NULL,  -- placed_order events
    first_event  timestamptz NOT NULL,
    last_event   timestamptz NOT NULL,
    PRIMARY KEY (run_id, day)
);

CREATE TABLE published_session_steps (
    run_id    bigint  NOT NULL,
    steps     integer NOT NULL,  -- the funnel steps a session holds, as sql/dashboard_funnel.sql's bits
    sessions  bigint  NOT NULL,
    PRIMARY KEY (run_id, steps)
);
