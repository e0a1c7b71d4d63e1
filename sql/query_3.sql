-- The old script's query 3, kept as its entry point under psql (\i sql/query_3.sql): median_total_minutes_before_order.sql.
\ir median_total_minutes_before_order.sql
