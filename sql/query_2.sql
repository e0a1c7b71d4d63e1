-- The old script's query 2, kept as its entry point under psql (\i sql/query_2.sql): median_session_duration_minutes_before_order.sql.
\ir median_session_duration_minutes_before_order.sql
