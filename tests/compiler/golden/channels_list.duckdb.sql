SELECT p.profile_idx, p.profile_id FROM profiles AS p LEFT JOIN profile_attributes AS a ON a.profile_idx = p.profile_idx WHERE COALESCE(LIST_HAS_ANY(a.channels, $p1), FALSE)
-- params: {"p1": ["天猫", "京东"]}
