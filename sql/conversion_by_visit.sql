-- Conversion by visit number (Kaplan–Meier), over customers whose first session starts in the window
-- (xccel.since and xccel.until: UTC calendar days, both inclusive; empty = open).
-- A customer is at risk at session k when they reached their k-th session without an earlier order; they
-- leave the risk set at their first order session (an event) or, if they never ordered, after their last
-- session (censored there). hazard(k) = first orders in session k / at risk at k; the share who have bought
-- by session k is 1 - prod over j <= k of (1 - hazard(j)). One row per k up to the last at-risk session.
WITH bounds AS (
    SELECT nullif(current_setting('xccel.since', true), '')::date AS since,
           nullif(current_setting('xccel.until', true), '')::date AS until
), per_customer AS (
    SELECT customer_id,
           max(session_number) AS last_session,
           min(session_number) FILTER (WHERE has_order) AS first_order_session,
           min(started_at) AS first_started_at
    FROM sessions
    GROUP BY customer_id
), windowed AS (
    SELECT p.*
    FROM per_customer AS p, bounds AS b
    WHERE (b.since IS NULL OR p.first_started_at >= b.since::timestamp AT TIME ZONE 'UTC')
      AND (b.until IS NULL OR p.first_started_at < (b.until + 1)::timestamp AT TIME ZONE 'UTC')
), marks AS (  -- per session number: customers whose last session it is, first orders, censored
    SELECT k,
           count(*) FILTER (WHERE is_last) AS last_here,
           count(*) FILTER (WHERE is_first_order) AS first_orders,
           count(*) FILTER (WHERE is_last AND NOT ordered) AS censored
    FROM (
        SELECT last_session AS k, true AS is_last, false AS is_first_order, first_order_session IS NOT NULL AS ordered
        FROM windowed
        UNION ALL
        SELECT first_order_session, false, true, true
        FROM windowed
        WHERE first_order_session IS NOT NULL
    ) AS m
    GROUP BY k
), per_step AS (
    SELECT k,
           coalesce(m.last_here, 0) AS last_here,
           coalesce(m.first_orders, 0) AS first_orders,
           coalesce(m.censored, 0) AS censored
    FROM generate_series(1, (SELECT coalesce(max(last_session), 0) FROM windowed)) AS k
    LEFT JOIN marks AS m USING (k)
), counted AS (
    SELECT k,
           sum(last_here) OVER (ORDER BY k DESC)::bigint AS customers_reached,
           sum(first_orders + censored) OVER (ORDER BY k DESC)::bigint AS at_risk,
           first_orders,
           censored
    FROM per_step
)
SELECT k AS session_number,
       customers_reached,
       at_risk,
       first_orders,
       censored,
       first_orders::double precision / at_risk AS hazard,
       -- everyone still at risk buying (hazard 1) ends the curve at 1; ln(0) is never taken
       CASE WHEN bool_or(first_orders = at_risk) OVER (ORDER BY k) THEN 1.0::double precision
            ELSE 1 - exp(sum(CASE WHEN first_orders < at_risk
                                  THEN ln(1 - first_orders::double precision / at_risk) ELSE 0 END)
                         OVER (ORDER BY k))
       END AS cumulative_share
FROM counted
WHERE at_risk > 0
ORDER BY k;
