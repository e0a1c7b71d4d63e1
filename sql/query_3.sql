-- The old script's query 3, kept as its entry point under psql (\i sql/query_3.sql); the query itself is
-- median_total_minutes_before_order.sql (\ir: found beside this file).
\ir median_total_minutes_before_order.sql
