-- median_total_minutes_before_order: over customers with at least one order, the median of the summed
-- duration_minutes of their sessions before the first order session (0 for first-session buyers): the
-- per-buyer totals of migrations 0005 and 0006, over the report window (xccel.since, xccel.until; unset or
-- empty: every customer) of migration 0004.
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total_minutes) AS median_total_minutes_before_order
FROM buyer_minutes_before_order();
