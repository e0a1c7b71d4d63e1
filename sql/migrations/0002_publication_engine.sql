-- xccel schema, version 2: which engine built a result (postgres: sql/sessionize*.sql; spark: xccel_cli/spark).
ALTER TABLE staged_result ADD COLUMN engine text NOT NULL DEFAULT 'postgres';
ALTER TABLE publications ADD COLUMN engine text NOT NULL DEFAULT 'postgres';
