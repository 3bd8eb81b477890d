SELECT p.profile_idx, p.profile_id FROM profiles AS p LEFT JOIN profile_attributes AS a ON a.profile_idx = p.profile_idx WHERE p.profile_idx IN (SELECT m.profile_idx FROM audience_members AS m WHERE m.audience_id = $p1) OR COALESCE(CASE WHEN NOT JSON_TYPE(a.traits, '/city') IN ('OBJECT', 'ARRAY') THEN JSON_EXTRACT_STRING(a.traits, '/city') END = $p2, FALSE)
-- params: {"p1": "静态-VIP", "p2": "上海"}
