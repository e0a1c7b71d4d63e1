-- The old script's query 1, kept as its entry point under psql (\i sql/query_1.sql); the query itself is
-- median_visits_before_order.sql (\ir: found beside this file).
\ir median_visits_before_order.sql
