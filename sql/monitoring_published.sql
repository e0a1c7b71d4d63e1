-- What monitoring reads about the published result: which publication, when (epoch seconds), how old it
-- is now, and the sessions and customers in it. Run in the published snapshot (the tables swap on load).
SELECT p.publication_id,
       extract(epoch FROM p.published_at)::float8 AS published_at_seconds,
       extract(epoch FROM clock_timestamp() - p.published_at)::float8 AS age_seconds,
       p.sessions,
       (SELECT count(DISTINCT customer_id) FROM sessions) AS customers
  FROM publications AS p
 ORDER BY p.publication_id DESC
 LIMIT 1;
