SELECT p.profile_idx, p.profile_id FROM profiles AS p WHERE p.profile_idx IN (SELECT t.profile_idx FROM profile_tags AS t WHERE t.tag_key = {p1: String} AND has({p2: Array(String)}, t.value) GROUP BY t.profile_idx HAVING COUNT(DISTINCT t.value) FILTER(WHERE has({p2: Array(String)}, t.value)) = 2)
-- params: {"p1": "偏好品类", "p2": ["女装", "鞋履"]}
