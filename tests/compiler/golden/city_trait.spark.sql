SELECT p.profile_idx, p.profile_id FROM profiles AS p LEFT JOIN profile_attributes AS a ON a.profile_idx = p.profile_idx WHERE COALESCE(ARRAY_CONTAINS(:p1, GET_JSON_OBJECT(a.traits, '$.city')), FALSE)
-- params: {"p1": ["上海", "北京"]}
