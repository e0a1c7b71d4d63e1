-- The old script's query 2, kept as its entry point under psql (\i sql/query_2.sql); the query itself is
-- median_session_duration_minutes_before_order.sql (\ir: found beside this file).
\ir median_session_duration_minutes_before_order.sql
