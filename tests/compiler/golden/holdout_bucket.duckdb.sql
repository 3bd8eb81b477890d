SELECT p.profile_idx, p.profile_id FROM profiles AS p WHERE CAST('0x' || LEFT(MD5(p.profile_id || ':' || $p1), 8) AS BIGINT) % $p2 BETWEEN $p3 AND $p4
-- params: {"p1": "春季大促", "p2": 100, "p3": 0, "p4": 9}
