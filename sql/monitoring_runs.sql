-- What monitoring reads about runs: the newest run of any command (outcome, counts, seconds per stage),
-- and for each outcome the time a run last ended with it (epoch seconds; succeeded, failed, ...).
SELECT last.run_id,
       last.command,
       last.status,
       extract(epoch FROM last.finished_at)::float8 AS finished_at_seconds,
       last.stage_seconds,
       last.lines_read,
       last.loaded,
       last.rejected,
       (SELECT coalesce(jsonb_object_agg(status, ended), '{}'::jsonb)
          FROM (SELECT status, extract(epoch FROM max(finished_at))::float8 AS ended
                  FROM runs
                 WHERE finished_at IS NOT NULL
                 GROUP BY status) AS ends) AS ended_at_by_outcome
  FROM (SELECT 1) AS one
  LEFT JOIN LATERAL (SELECT * FROM runs ORDER BY run_id DESC LIMIT 1) AS last ON true;
