"""`tessera coupon …` on a copy of the demo brand, as a user types it: templates from a file,
issuing to a member, an audience and a CSV file, redeeming (and a refusal exiting 2 with the field
and the reason), voiding, expiry and the report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli.main import app as cli
from tessera.runtime import Instance


@pytest.fixture(scope="module")
def data(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coupons-cli") / "data"
    shutil.copytree(demo_dir, root)
    return root


def run(data: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, ["coupon", *args, "--data-dir", str(data)])
    assert result.exit_code == code, result.output
    return result.output


def member(data: Path) -> tuple[str, str]:
    with Instance(data) as inst:
        row = inst.analytic.cursor().execute(
            "SELECT 'phone:' || i.id_value, p.profile_id FROM profile_identifiers i JOIN profiles p USING (profile_idx) "
            "WHERE i.id_type = 'phone' ORDER BY p.profile_id DESC LIMIT 1").fetchall()[0]  # fmt: skip
        inst.close()
    return str(row[0]), str(row[1])


def test_a_coupon_from_template_to_report(data: Path, tmp_path: Path) -> None:
    body = {"key": "cli-new", "name": "新人券", "name_en": "Welcome", "kind": "fixed", "amount": "20",
            "threshold": "99", "valid_days": 14, "campaign": "welcome"}  # fmt: skip
    (tmp_path / "t.json").write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    assert "cli-new" in run(data, "template", "create", str(tmp_path / "t.json"))
    listed = {t["key"]: t for t in json.loads(run(data, "template", "list", "--campaign", "welcome", "--json"))}
    assert listed["cli-new"]["summary"].startswith("满99减20") and "cli-new" in run(data, "template", "list")
    assert json.loads(run(data, "template", "show", "cli-new"))["threshold"] == "99"

    phone, pid = member(data)
    out = run(data, "issue", "cli-new", "--member", phone, "--key", "welcome:" + pid)
    code = out.split()[0]
    assert code and pid in out and "replayed" not in out
    assert "replayed" in run(data, "issue", "cli-new", "--member", pid, "--key", "welcome:" + pid)
    mine = json.loads(run(data, "list", "--member", phone, "--template", "cli-new", "--json"))
    assert [c["code"] for c in mine] == [code]  # (the demo member also holds coupons of the history)

    refused = run(data, "redeem", code, "--member", phone, "--order", "W-1", "--amount", "50", code=2)
    assert "amount:" in refused and "threshold_not_met" in refused
    assert "20.00" in run(data, "redeem", code, "--member", phone, "--order", "W-1", "--amount", "120.5")
    assert "already_redeemed" in run(
        data, "redeem", code, "--member", phone, "--order", "W-2", "--amount", "120", code=2
    )
    assert json.loads(run(data, "show", code))["discount"] == "20.00"

    report = json.loads(run(data, "report", "--campaign", "welcome", "--json"))
    assert (report["templates"][0]["issued"], report["templates"][0]["redeemed"], report["templates"][0]["gmv"]) == (
        1, 1, "120.50")  # fmt: skip
    assert "0 expired" in run(data, "expire")


def test_pause_and_bulk_issues(data: Path, tmp_path: Path) -> None:
    body = {"key": "cli-bulk", "name": "包邮券", "kind": "shipping", "valid_days": 7, "per_person": None}
    (tmp_path / "t.json").write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    run(data, "template", "create", str(tmp_path / "t.json"))
    run(data, "template", "pause", "cli-bulk")
    assert "inactive" in run(data, "issue", "cli-bulk", "--member", member(data)[1], "--key", "x", code=2)
    assert "active" in run(data, "template", "resume", "cli-bulk")

    with Instance(data) as inst:
        from tessera.services.audiences import list_audiences

        aud = next(a for a in list_audiences(inst=inst) if a.kind == "imported")
        inst.close()
    got = json.loads(run(data, "issue-audience", "cli-bulk", aud.id, "--key", "ship", "--json"))
    assert got["issued"] > 0 and got["refused"] == {}
    assert f"0 issued, {got['issued']} replayed" in run(data, "issue-audience", "cli-bulk", aud.id, "--key", "ship")

    phone, pid = member(data)
    (tmp_path / "list.csv").write_text(f"member\n{phone}\nphone:+8613000000000\n", encoding="utf-8")
    out = run(data, "issue-file", "cli-bulk", str(tmp_path / "list.csv"), "--key", "file1")
    assert "refused: none" in out and "line 3" in out and "unknown_member" in out

    code = json.loads(run(data, "list", "--member", pid, "--template", "cli-bulk", "--json"))[0]["code"]
    assert "void" in run(data, "void", code)
    assert "void" in run(data, "redeem", code, "--member", pid, "--order", "X", "--amount", "10", code=2)
    assert "unknown_template" in run(data, "template", "show", "nope", code=2)
