SELECT p.profile_idx, p.profile_id FROM profiles AS p WHERE CAST(CONV(SUBSTRING(MD5(CONCAT(p.profile_id, ':', :p1)), 1, 8), 16, 10) AS BIGINT) % :p2 BETWEEN :p3 AND :p4
-- params: {"p1": "春季大促", "p2": 100, "p3": 0, "p4": 9}
