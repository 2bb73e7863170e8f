-- Messages received and how the user reacted. Input: stg_messages (decisions up to the
-- end of the snapshot day, days_ago = S - date(ts)). Holdout rows were never sent.
SELECT
    user_id,
    SUM(CASE WHEN arm = 'treatment' AND days_ago < 30 THEN 1 ELSE 0 END)             AS messages_30,
    SUM(CASE WHEN arm = 'treatment' THEN 1 ELSE 0 END)                               AS messages_90,
    SUM(CASE WHEN arm = 'treatment' AND channel = 'push' THEN 1 ELSE 0 END)          AS push_90,
    SUM(CASE WHEN arm = 'treatment' AND channel = 'email' THEN 1 ELSE 0 END)         AS email_90,
    SUM(CASE WHEN opened THEN 1 ELSE 0 END)                                          AS opens_90,
    SUM(CASE WHEN clicked THEN 1 ELSE 0 END)                                         AS clicks_90,
    SUM(CASE WHEN unsubscribed THEN 1 ELSE 0 END)                                    AS unsubscribes_90,
    SUM(CASE WHEN arm = 'treatment' AND message_type = 'winback_offer' THEN 1 ELSE 0 END) AS winback_offers_90,
    MIN(CASE WHEN arm = 'treatment' THEN days_ago END)                               AS days_since_message
FROM stg_messages
GROUP BY user_id
