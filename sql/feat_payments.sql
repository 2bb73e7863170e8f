-- Payment trouble over trailing windows. Input: stg_billing (deduplicated events up to the
-- end of the snapshot day, days_ago = S - date(ts)).
SELECT
    user_id,
    SUM(CASE WHEN event_type = 'payment_failed' AND days_ago < 30  THEN 1 ELSE 0 END) AS failures_30,
    SUM(CASE WHEN event_type = 'payment_failed' AND days_ago < 90  THEN 1 ELSE 0 END) AS failures_90,
    SUM(CASE WHEN event_type = 'payment_failed' AND days_ago < 365 THEN 1 ELSE 0 END) AS failures_365,
    SUM(CASE WHEN event_type = 'payment_failed' AND days_ago < 365
              AND failure_reason = 'insufficient_funds' THEN 1 ELSE 0 END)          AS failures_insufficient_funds_365,
    SUM(CASE WHEN event_type = 'payment_failed' AND days_ago < 365
              AND failure_reason = 'expired_card' THEN 1 ELSE 0 END)                AS failures_expired_card_365,
    SUM(CASE WHEN event_type = 'payment_recovered' AND days_ago < 365 THEN 1 ELSE 0 END) AS recoveries_365,
    SUM(CASE WHEN event_type = 'expire' AND days_ago < 365 THEN 1 ELSE 0 END)        AS lapses_365,
    SUM(CASE WHEN event_type = 'plan_change' AND days_ago < 365 THEN 1 ELSE 0 END)   AS plan_changes_365,
    SUM(CASE WHEN event_type = 'refund' AND days_ago < 365 THEN 1 ELSE 0 END)        AS refunds_365,
    MIN(CASE WHEN event_type = 'payment_failed' THEN days_ago END)                   AS days_since_failure,
    MIN(CASE WHEN event_type = 'cancel' THEN days_ago END)                           AS days_since_cancel
FROM stg_billing
GROUP BY user_id
