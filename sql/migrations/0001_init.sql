-- xccel schema, version 1. Runs inside the configured schema (search_path).

-- One row per xccel command that changes data.
CREATE TABLE runs (
    run_id           bigserial PRIMARY KEY,
    command          text        NOT NULL,
    source           text,
    started_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at      timestamptz,
    status           text        NOT NULL DEFAULT 'running',  -- running, succeeded, failed, unchanged
    error            text,
    lines_read       bigint,
    loaded           bigint,
    anonymous        bigint,
    duplicates       bigint,
    already_loaded   bigint,
    rejected         bigint,
    customers_touched bigint,
    stage_seconds    jsonb       NOT NULL DEFAULT '{}',
    rules            jsonb,
    source_fingerprint jsonb
);

-- Every kept event (first line read wins), with its whole line as payload.
CREATE TABLE raw_events (
    event_id     bigint      PRIMARY KEY,
    event_type   text        NOT NULL,
    customer_id  bigint,
    "timestamp"  timestamptz NOT NULL,
    payload      jsonb       NOT NULL,
    run_id       bigint      NOT NULL
);

-- Every refused line, with why.
CREATE TABLE rejects (
    run_id       bigint NOT NULL,
    line_number  bigint NOT NULL,
    reason       text   NOT NULL,
    detail       text,
    raw_line     text   NOT NULL,
    PRIMARY KEY (run_id, line_number)
);

-- Published: one row per sessionized event (the old script's tb_events, same columns and meanings).
CREATE TABLE tb_events (
    event_id        bigint           PRIMARY KEY,
    event_type      text             NOT NULL,
    customer_id     bigint           NOT NULL,
    "timestamp"     timestamptz      NOT NULL,
    prev_timestamp  timestamptz,
    new_session     integer          NOT NULL,
    "time"          double precision,
    increment       integer          NOT NULL,
    session_id      text             NOT NULL
);

-- Published: one row per session.
CREATE TABLE sessions (
    session_id        text             PRIMARY KEY,
    customer_id       bigint           NOT NULL,
    session_number    integer          NOT NULL,
    started_at        timestamptz      NOT NULL,
    ended_at          timestamptz      NOT NULL,
    duration_minutes  double precision NOT NULL,
    event_count       integer          NOT NULL,
    has_order         boolean          NOT NULL,
    landing_page      text,
    referrer          text
);

-- One row per publication of tb_events and sessions; the newest describes what readers see.
CREATE TABLE publications (
    publication_id   bigserial   PRIMARY KEY,
    run_id           bigint,
    published_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    rules            jsonb       NOT NULL,
    covers_run_id    bigint      NOT NULL,  -- raw_events up to this run are included
    full_refresh     boolean     NOT NULL,
    customers_rebuilt bigint     NOT NULL,
    events           bigint      NOT NULL,
    sessions         bigint      NOT NULL,
    cut_sessions     bigint      NOT NULL DEFAULT 0
);

-- What sessionize built and load has not yet published (at most one row).
CREATE TABLE staged_result (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    run_id           bigint,
    built_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    rules            jsonb       NOT NULL,
    covers_run_id    bigint      NOT NULL,
    based_on_publication_id bigint,
    full_refresh     boolean     NOT NULL,
    customers_rebuilt bigint     NOT NULL,
    events           bigint      NOT NULL,
    sessions         bigint      NOT NULL,
    cut_sessions     bigint      NOT NULL DEFAULT 0
);
