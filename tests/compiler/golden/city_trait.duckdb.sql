SELECT p.profile_idx, p.profile_id FROM profiles AS p LEFT JOIN profile_attributes AS a ON a.profile_idx = p.profile_idx WHERE COALESCE(JSON_EXTRACT_STRING(a.traits, '/city') IN (SELECT UNNEST($p1)), FALSE)
-- params: {"p1": ["上海", "北京"]}
