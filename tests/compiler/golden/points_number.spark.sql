SELECT p.profile_idx, p.profile_id FROM profiles AS p LEFT JOIN profile_attributes AS a ON a.profile_idx = p.profile_idx WHERE COALESCE(CASE WHEN GET_JSON_OBJECT(a.traits, '$.points') RLIKE '^[+-]?(\\d+(\\.\\d*)?|\\.\\d+)([eE][+-]?\\d+)?$' THEN CAST(GET_JSON_OBJECT(a.traits, '$.points') AS DOUBLE) END BETWEEN :p1 AND :p2, FALSE)
-- params: {"p1": 100.0, "p2": 500.0}
