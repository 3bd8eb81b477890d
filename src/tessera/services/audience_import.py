"""Imported audiences (导入群组 / 上传人群包): a list of phones, emails or ids matched through OneID.

The file is CSV (UTF-8, with or without BOM, or another ``encoding`` such as gbk) whose header
names identifier types — ``phone``, ``email``, ``user_id``, ``member_id``, ``wechat_openid`` … or
the Chinese headers CRM exports use (手机号, 邮箱, 会员号 …). A file with one unnamed column takes
``id_type``. Each value is normalised by the identity rules (a phone ``138 0013 8000`` is
``+8613800138000``) and looked up among linked identifiers; a row matches the profile of its
highest-priority identifier that is known. Every row gets a status in the report —
``matched``, ``unmatched`` (valid but unknown), ``invalid`` (with the reason) or ``empty``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from pydantic import BaseModel, Field

from tessera.domain.identity import IdentityRules, Rejected, normalise
from tessera.importing.kinds import CUSTOMERS
from tessera.runtime import Instance
from tessera.services.audiences import Audience, AudienceError, _check_name, new_id, to_audience
from tessera.services.identity_rules import get_rules
from tessera.stores.models import AudienceRow

MAX_ROWS = 5_000_000
_STATUSES = ("matched", "unmatched", "invalid", "empty")


class ImportReport(BaseModel):
    audience: Audience
    rows: int
    matched: int
    unmatched: int
    invalid: int
    empty: int
    members: int = Field(description="distinct profiles (two rows of one person count once)")
    columns: dict[str, str] = Field(description="file column → identifier type")


class ImportRow(BaseModel):
    line: int
    id_type: str | None
    raw_value: str | None
    id_value: str | None
    profile_id: str | None
    status: str
    reason: str | None


def _header_types(header: Sequence[str], rules: IdentityRules, id_type: str | None) -> dict[int, str]:
    """Which column holds which identifier type (by name or a Chinese alias)."""
    known = {t.name for t in rules.types}
    aliases: dict[str, str] = {}
    for f in CUSTOMERS.fields:
        target = "user_id" if f.name == "customer_id" else f.name
        if target in known:
            for a in (f.name, *f.aliases):
                aliases[a.lower()] = target
    out: dict[int, str] = {}
    for i, name in enumerate(header):
        key = name.strip().lower()
        if key in known:
            out[i] = key
        elif key in aliases:
            out[i] = aliases[key]
    if not out and id_type is not None and len(header) == 1:
        return {0: id_type}
    return out


def _read(data: bytes, encoding: str) -> list[list[str]]:
    try:
        text = data.decode(encoding)
    except (UnicodeDecodeError, LookupError) as e:
        raise AudienceError(422, "file", f"cannot read the file as {encoding}: {e}; try encoding=gbk") from None
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


def import_audience(*, inst: Instance, name: str, data: bytes, id_type: str | None = None,
                    encoding: str = "utf-8", name_en: str | None = None,
                    description: str | None = None) -> ImportReport:  # fmt: skip
    """Create an imported audience from a CSV file's identifiers; every row is reported."""
    rules = get_rules(inst.operational)
    if id_type is not None and id_type not in {t.name for t in rules.types}:
        raise AudienceError(422, "id_type", f"{id_type!r} is not an identifier type")
    rows = _read(data, encoding)
    if not rows:
        raise AudienceError(422, "file", "the file is empty")
    header, body = rows[0], rows[1:]
    columns = _header_types(header, rules, id_type)
    if not columns:
        if id_type is None:
            raise AudienceError(
                422, "file", f"no column names an identifier type (header: {header!r}); "
                "name columns phone, email, user_id … or give id_type for a one-column file without header",
            )  # fmt: skip
        columns, body = {0: id_type}, rows  # no header: every line is a value
    if len(body) > MAX_ROWS:
        raise AudienceError(413, "file", f"more than {MAX_ROWS} rows")
    priority = {t.name: i for i, t in enumerate(rules.types)}
    ordered = sorted(columns.items(), key=lambda c: priority[c[1]])
    first_line = 1 if body is rows else 2
    # One candidate per (line, identifier given); a line with none is one 'empty' candidate.
    found: list[tuple[int, str | None, str | None, str | None, str | None]] = []
    for n, cells in enumerate(body):
        line = n + first_line
        before = len(found)
        for col, t in ordered:
            raw = cells[col].strip() if col < len(cells) else ""
            if not raw:
                continue
            try:
                found.append((line, t, raw, normalise(rules, t, raw), None))
            except Rejected as e:
                found.append((line, t, raw, None, e.reason))
        if len(found) == before:
            found.append((line, None, None, None, None))
    lines, types, raws, values, reasons = (list(c) for c in zip(*found, strict=True)) if found else ([], [], [], [], [])
    cands = pa.table({"line": pa.array(lines, pa.int64()), "id_type": pa.array(types, pa.string()),
                      "raw_value": pa.array(raws, pa.string()), "id_value": pa.array(values, pa.string()),
                      "reason": pa.array(reasons, pa.string()),
                      "prio": pa.array([priority.get(t, 0) if t else 0 for t in types], pa.int32())})  # fmt: skip
    now = inst.clock.now()
    with inst.operational.session() as s:
        _check_name(s, name)
        made = AudienceRow(id=new_id(), name=name, name_en=name_en, description=description, kind="imported",
                           definition=None, schedule=None, status="active", version=1, created_at=now,
                           updated_at=now, refreshed_at=now)  # fmt: skip
        s.add(made)
        s.flush()
        counts = _store(inst, made.id, cands, now.replace(tzinfo=None))
        made.member_count = counts["members"]
        audience = to_audience(made)
    return ImportReport(audience=audience, rows=len(body), columns={header[c] if body is not rows else "1": t
                        for c, t in columns.items()}, **{k: counts[k] for k in (*_STATUSES, "members")})  # fmt: skip


# One row per line: the best (highest-priority known) identifier, else the first problem, else unmatched.
_REPORT = """
CREATE TEMP TABLE _import_report AS
WITH looked AS (
    SELECT c.*, i.profile_idx FROM _import_cands AS c
    LEFT JOIN profile_identifiers AS i ON i.id_type = c.id_type AND i.id_value = c.id_value
), ranked AS (
    SELECT *, row_number() OVER (
        PARTITION BY line ORDER BY profile_idx IS NULL, reason IS NULL DESC, prio, id_type
    ) AS r FROM looked
)
SELECT line, id_type, raw_value, id_value, profile_idx,
    CASE WHEN profile_idx IS NOT NULL THEN 'matched' WHEN id_type IS NULL THEN 'empty'
         WHEN reason IS NOT NULL THEN 'invalid' ELSE 'unmatched' END AS status,
    reason
FROM ranked WHERE r = 1
"""


def _store(inst: Instance, audience_id: str, cands: pa.Table, now: Any) -> dict[str, int]:
    with inst.analytic.transaction() as cur:
        cur.register("_import_arrow", cands)
        cur.execute("CREATE TEMP TABLE _import_cands AS SELECT * FROM _import_arrow")
        cur.unregister("_import_arrow")
        cur.execute(_REPORT)
        cur.execute(
            "INSERT INTO audience_import_rows SELECT $aud, line, id_type, raw_value, id_value, profile_idx, status, reason "
            "FROM _import_report",
            {"aud": audience_id},
        )
        cur.execute(
            "INSERT INTO audience_members SELECT $aud, p.profile_idx, p.profile_id, $now FROM profiles AS p "
            "WHERE p.profile_idx IN (SELECT profile_idx FROM _import_report WHERE status = 'matched')",
            {"aud": audience_id, "now": now},
        )
        got = cur.execute(
            "SELECT count_if(status = 'matched'), count_if(status = 'unmatched'), count_if(status = 'invalid'), "
            "count_if(status = 'empty'), count(DISTINCT profile_idx) FROM _import_report"
        ).fetchall()[0]
        cur.execute("DROP TABLE _import_report")
        cur.execute("DROP TABLE _import_cands")
    inst.analytic.changed("audience_members")
    return dict(zip((*_STATUSES, "members"), (int(x) for x in got), strict=True))


def import_rows(*, inst: Instance, audience_id: str, status: str | None = None, limit: int = 1000,
                offset: int = 0) -> list[ImportRow]:  # fmt: skip
    """The import report of an imported audience (e.g. ``status='unmatched'``), in file order."""
    if status is not None and status not in _STATUSES:
        raise AudienceError(422, "status", f"status must be one of {', '.join(_STATUSES)}")
    rows = (
        inst.analytic.cursor()
        .execute(
            "SELECT r.line, r.id_type, r.raw_value, r.id_value, p.profile_id, r.status, r.reason "
            "FROM audience_import_rows AS r LEFT JOIN profiles AS p ON p.profile_idx = r.profile_idx "
            "WHERE r.audience_id = $aud AND (CAST($status AS VARCHAR) IS NULL OR r.status = $status) ORDER BY r.line LIMIT $lim OFFSET $off",
            {"aud": audience_id, "status": status, "lim": limit, "off": offset},
        )
        .fetchall()
    )
    cols = ("line", "id_type", "raw_value", "id_value", "profile_id", "status", "reason")
    return [ImportRow(**dict(zip(cols, r, strict=True))) for r in rows]
