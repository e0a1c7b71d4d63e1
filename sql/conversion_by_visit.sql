-- Conversion by visit number (Kaplan–Meier), over the customers in the report window (xccel.since,
-- xccel.until: UTC calendar days, both inclusive; unset or empty: open; migration 0004 defines it).
-- A customer is at risk at session k when they reached their k-th session without an earlier order; they
-- leave the risk set at their first order session (an event) or, if they never ordered, after their last
-- session (censored there). hazard(k) = first orders in session k / at risk at k; the share who have bought
-- by session k is 1 - prod over j <= k of (1 - hazard(j)). One row per k up to the last at-risk session.
-- `(SELECT report_window_is_open())`: a subquery, so the test runs once per query, not once per row.
WITH per_customer AS (  -- each customer in the report window: last session, first order session
    SELECT customer_id,
           max(session_number) AS last_session,
           min(first_order_session_number) AS first_order_session
    FROM sessions
    WHERE (SELECT report_window_is_open()) OR customer_id IN (SELECT customer_id FROM report_window_customers())
    GROUP BY customer_id
), marks AS (  -- per session number: customers whose last session it is, first orders, censored
    SELECT k,
           count(*) FILTER (WHERE is_last) AS last_here,
           count(*) FILTER (WHERE is_first_order) AS first_orders,
           count(*) FILTER (WHERE is_last AND NOT ordered) AS censored
    FROM (
        SELECT last_session AS k, true AS is_last, false AS is_first_order, first_order_session IS NOT NULL AS ordered
        FROM per_customer
        UNION ALL
        SELECT first_order_session, false, true, true
        FROM per_customer
        WHERE first_order_session IS NOT NULL
    ) AS m
    GROUP BY k
), per_step AS (  -- every session number from 1, with zeros where nothing happens
    SELECT k,
           coalesce(m.last_here, 0) AS last_here,
           coalesce(m.first_orders, 0) AS first_orders,
           coalesce(m.censored, 0) AS censored
    FROM generate_series(1, (SELECT coalesce(max(last_session), 0) FROM per_customer)) AS k
    LEFT JOIN marks AS m USING (k)
), counted AS (  -- customers_reached (last session >= k), at_risk (leaving the risk set at k or later)
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
