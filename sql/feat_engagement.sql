-- Listening engagement over trailing windows ending on the snapshot day.
-- Input: stg_activity (one row per user per active day, days_ago = S - date, 0..89).
SELECT
    user_id,
    SUM(CASE WHEN days_ago < 7  THEN 1 ELSE 0 END)           AS active_days_7,
    SUM(CASE WHEN days_ago < 14 THEN 1 ELSE 0 END)           AS active_days_14,
    SUM(CASE WHEN days_ago < 30 THEN 1 ELSE 0 END)           AS active_days_30,
    SUM(CASE WHEN days_ago < 60 THEN 1 ELSE 0 END)           AS active_days_60,
    COUNT(*)                                                 AS active_days_90,
    SUM(CASE WHEN days_ago < 7  THEN streams ELSE 0 END)     AS streams_7,
    SUM(CASE WHEN days_ago < 30 THEN streams ELSE 0 END)     AS streams_30,
    SUM(streams)                                             AS streams_90,
    CAST(SUM(CASE WHEN days_ago < 30 THEN ms_played ELSE 0 END) AS DOUBLE) / 3600000 AS hours_played_30,
    SUM(CASE WHEN days_ago < 30 THEN skips ELSE 0 END)       AS skips_30,
    SUM(CASE WHEN days_ago < 30 THEN sessions ELSE 0 END)    AS sessions_30,
    SUM(CASE WHEN days_ago < 30 THEN searches ELSE 0 END)    AS searches_30,
    SUM(CASE WHEN days_ago < 30 THEN saves ELSE 0 END)       AS saves_30,
    SUM(CASE WHEN days_ago < 30 THEN unique_tracks ELSE 0 END) AS unique_tracks_30,
    -- Trend: the last 14 days against the 60 before them, per day, so 1.0 = steady.
    (CAST(SUM(CASE WHEN days_ago < 14 THEN ms_played ELSE 0 END) AS DOUBLE) / 14 + 60000)
      / (CAST(SUM(CASE WHEN days_ago >= 14 AND days_ago < 74 THEN ms_played ELSE 0 END) AS DOUBLE) / 60 + 60000)
                                                             AS listening_trend_14_60,
    MIN(days_ago)                                            AS days_since_active,
    SUM(CASE WHEN days_ago < 30 AND is_weekend THEN 1 ELSE 0 END) AS weekend_days_30,
    SUM(CASE WHEN days_ago < 30 THEN podcast_ms ELSE 0 END)  AS podcast_ms_30,
    SUM(CASE WHEN days_ago < 30 THEN ms_played ELSE 0 END)   AS ms_played_30
FROM stg_activity
GROUP BY user_id
