SELECT p.profile_idx, p.profile_id FROM profiles AS p LEFT JOIN profile_attributes AS a ON a.profile_idx = p.profile_idx WHERE p.profile_idx IN (SELECT m.profile_idx FROM audience_members_current AS m WHERE m.audience_id = :p1) OR COALESCE(GET_JSON_OBJECT(a.traits, '$.city') = :p2, FALSE)
-- params: {"p1": "静态-VIP", "p2": "上海"}
