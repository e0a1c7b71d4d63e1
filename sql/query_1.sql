-- The old script's query 1, kept as its entry point under psql (\i sql/query_1.sql): median_visits_before_order.sql.
\ir median_visits_before_order.sql
