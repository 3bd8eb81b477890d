SELECT p.profile_idx, p.profile_id FROM profiles AS p WHERE reinterpretAsUInt32(reverse(unhex(SUBSTRING(LOWER(HEX(MD5(CONCAT(p.profile_id, ':', {p1: String})))), 1, 8)))) % {p2: Int64} BETWEEN {p3: Int64} AND {p4: Int64}
-- params: {"p1": "春季大促", "p2": 100, "p3": 0, "p4": 9}
