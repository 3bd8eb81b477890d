"""The demo's people, scattered over channels, come out as one profile each (scored against truth.parquet)."""

from __future__ import annotations

from pathlib import Path

import duckdb
from typer.testing import CliRunner

from tessera.cli.main import app

runner = CliRunner()


def test_demo_people_are_one_profile_each_and_never_fused(tmp_path: Path) -> None:
    root = tmp_path / "data"
    result = runner.invoke(app, ["demo", "--users", "1500", "--no-serve", "--data-dir", str(root), "--live", "0"])
    assert result.exit_code == 0, result.output
    con = duckdb.connect(str(root / "analytics.duckdb"), read_only=True)
    try:
        truth = str(root / "demo" / "truth.parquet")
        con.execute(
            """CREATE TEMP TABLE scored AS
            SELECT t.person_id, t.id_type, t.source, t.shared, t.variant, i.profile_idx
            FROM read_parquet(?) t LEFT JOIN profile_identifiers i
              ON i.id_type = CASE WHEN t.id_type LIKE 'wechat_openid%' THEN 'wechat_openid' ELSE t.id_type END
             AND i.id_value = CASE WHEN t.id_type = 'device_id' THEN lower(t.canonical) ELSE t.canonical END""",
            [truth],
        )
        # Every identifier in the files was linked (typos too: a mistyped phone is someone's phone).
        assert con.execute("SELECT count(*) FROM scored WHERE profile_idx IS NULL").fetchall() == [(0,)]
        # Precision: no profile holds the (unshared) identifiers of two people.
        fused = con.execute(
            "SELECT count(*) FROM (SELECT profile_idx FROM scored WHERE NOT shared "
            "GROUP BY 1 HAVING count(DISTINCT person_id) > 1)"
        ).fetchall()[0][0]
        assert fused == 0
        # A family's shared device joined at most one of them: no profile holds two user ids.
        assert con.execute(
            "SELECT count(*) FROM (SELECT profile_idx FROM profile_identifiers WHERE id_type = 'user_id' "
            "GROUP BY 1 HAVING count(*) > 1)"
        ).fetchall() == [(0,)]
        # Recall: for members with one account, what the CRM knows of them and every member id, phone and
        # email they used on any channel is one profile. (Marketplace buyer ids and devices or cookies
        # never signed in carry nothing that links them; two CRM accounts of one person stay apart under
        # the user_id limit of 1 — by design.)
        split, members = con.execute(
            """WITH one AS (SELECT person_id FROM scored WHERE id_type = 'member_id' GROUP BY 1
                            HAVING count(DISTINCT profile_idx) = 1),
                    linked AS (SELECT s.person_id, count(DISTINCT s.profile_idx) AS n FROM scored s JOIN one USING (person_id)
                               WHERE NOT s.shared AND s.variant <> 'typo'
                                 AND (s.source = 'crm' OR s.id_type IN ('member_id', 'phone', 'email'))
                               GROUP BY 1)
            SELECT count(*) FILTER (WHERE n > 1), count(*) FROM linked"""
        ).fetchall()[0]
        assert members > 700
        assert split == 0
    finally:
        con.close()
