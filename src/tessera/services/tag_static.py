"""Static tags (静态标签): values set per profile, not computed.

Three ways in, one path: the management API in bulk (:func:`set_values`, trigger ``api``), a CSV
file of (identifier, value) (:func:`import_values`, trigger ``import``) and third parties through
the open tag API with tag API keys scoped to categories (trigger ``open_api``).

An item names a profile by ``profile_id`` (a merged-away id follows its merge), by
``id_type`` + ``id_value`` or by an identifier type as the key (``{"phone": "138 0013 8000"}``,
``email``, ``user_id``, ``wechat_unionid`` …); identifiers are normalised by the identity rules and
looked up in ``profile_identifiers``. Every value goes through :func:`tessera.domain.tags.check_value`.
An item that fails (a bad reference or value) is reported with its index or file line and the
reason and is not applied; an item whose profile is unknown is reported as unmatched; the rest
apply in one transaction — the change log and one recorded run (:func:`tag_values.swap`).

``op``: ``add`` (a single-valued tag's value is replaced), ``remove`` (the value, or every value
when none is given) and ``replace`` (the items are the tag's complete values: everyone not listed
loses it; management API and import only). In a replace, a profile whose every item failed keeps
its values.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import duckdb
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.orm import Session

from tessera.domain.identity import IdentityRules, Rejected, normalise
from tessera.domain.tags import Tag, check_value
from tessera.importing.kinds import CUSTOMERS
from tessera.runtime import Instance
from tessera.services import tag_values, tokens
from tessera.services.audience_import import MAX_ROWS
from tessera.services.identity_rules import get_rules
from tessera.services.profile_view import ProfileViewError, find_profile
from tessera.services.tag_catalogue import CatalogueError, get_tag, list_categories, list_tags
from tessera.services.tag_values import RunResult, TagRunError

Op = Literal["add", "remove", "replace"]
OPS: tuple[Op, ...] = ("add", "remove", "replace")
#: Items in one API call (bigger sets: import a file).
MAX_ITEMS = 100_000
#: Data lines in one imported file (as many as an imported audience).
MAX_FILE_ROWS = MAX_ROWS
#: Problems listed in an answer (the counts are complete).
MAX_REPORTED = 1_000
PROFILE_ID = "profile_id"
#: Headers of the file column holding profile ids, and of the value column (besides the tag's key and names).
PROFILE_ID_HEADERS = ("profile_id", "画像id", "用户画像id", "档案id", "profile")
VALUE_HEADERS = ("value", "values", "标签值", "值", "tag_value")
#: What separates the values of a multi-valued tag in a file cell.
MULTI_SEPARATOR = "|"


# -- reports -------------------------------------------------------------------------------------


class Problem(BaseModel):
    """An item that was not applied: ``index`` (API, from 0) or ``line`` (file, the header is line 1)."""

    index: int | None = None
    line: int | None = None
    field: str | None = Field(default=None, description="what is wrong: value, phone, id_type …")
    reference: dict[str, str] | None = Field(default=None, description="the profile reference, normalised")
    reason: str


class SetReport(BaseModel):
    """What a bulk change did: items applied, those that were not (first 1,000 of each), and the run."""

    tag_key: str
    op: Op
    items: int = Field(description="items (API) or data lines (file) received")
    applied: int
    unmatched_total: int = Field(description="valid items whose profile is unknown")
    invalid_total: int = Field(description="items with a bad reference or value")
    unmatched: list[Problem]
    invalid: list[Problem]
    columns: dict[str, str] | None = Field(default=None, description="file column → role (file import)")
    run: RunResult


@dataclass(slots=True)
class _Item:
    at: int  # index or line
    refs: list[tuple[str, str]] = field(default_factory=list)  # (id_type or profile_id, normalised value)
    values: list[str | None] = field(default_factory=list)  # stored texts; [None] removes every value
    field: str | None = None
    error: str | None = None


class _Bad(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


# -- checking a tag and its values ---------------------------------------------------------------


def settable_tag(session: Session, key: str) -> Tag:
    """The static tag ``key`` that may get values now (404 unknown, 422 computed, 409 archived)."""
    tag = get_tag(session=session, key=key)
    if tag.kind != "static":
        raise CatalogueError(422, "kind", f"tag {key!r} is a {tag.kind} tag: its values are computed, not set "
                             "(only static tags take values through the API or a file)")  # fmt: skip
    if tag.status == "archived":
        raise CatalogueError(409, "status", f"tag {key!r} is archived: set it active or draft to change its values")
    return tag


def check_op(op: object, *, allow_replace: bool = True) -> Op:
    allowed = OPS if allow_replace else ("add", "remove")
    if op not in allowed:
        extra = "" if allow_replace else " (replace is for the management API)"
        raise CatalogueError(422, "op", f"op must be one of {', '.join(allowed)}{extra}, not {op!r}")
    return op


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
_INT = re.compile(r"[+-]?\d+")
_TRUE = {"true", "1", "yes", "y", "t", "是", "真"}
_FALSE = {"false", "0", "no", "n", "f", "否", "假"}


def coerce(tag: Tag, value: object) -> object:
    """Text as a number or bool tag's value (files, the CLI, form fields); anything else as given."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if tag.value_type == "number" and _NUMBER.fullmatch(text):
        return int(text) if _INT.fullmatch(text) else float(text)
    if tag.value_type == "bool" and text.lower() in _TRUE | _FALSE:
        return text.lower() in _TRUE
    return value


def _values(tag: Tag, op: Op, raw: object, *, missing: bool) -> list[str | None]:
    """The stored texts of an item's value (a list for a multi-valued tag); raises :class:`_Bad`."""
    if missing or raw is None:
        if op == "remove":
            return [None]
        raise _Bad("value", f"missing: {op} needs a value")
    given = raw if isinstance(raw, list) else [raw]
    if not given:
        raise _Bad("value", "an empty list: give a value")
    if len(given) > 1 and not tag.multi:
        raise _Bad("value", f"tag {tag.key!r} is single-valued: give one value, not {len(given)}")
    out: list[str | None] = []
    for v in given:
        try:
            out.append(check_value(tag, coerce(tag, v)).strip())
        except ValueError as e:
            raise _Bad("value", str(e)) from None
    return out


def _reference(rules: IdentityRules, given: Iterable[tuple[str, str, object]]) -> list[tuple[str, str]]:
    """(field, id type or profile_id, raw value) → normalised references in the order given; raises
    :class:`_Bad` for the first unusable one when none is usable."""
    refs: list[tuple[str, str]] = []
    bad: _Bad | None = None
    for fld, id_type, raw in given:
        if id_type == PROFILE_ID:
            if isinstance(raw, str) and raw.strip():
                refs.append((PROFILE_ID, raw.strip()))
            elif bad is None:
                bad = _Bad(fld, "a profile id is non-empty text")
            continue
        try:
            refs.append((id_type, normalise(rules, id_type, raw)))
        except Rejected as e:
            bad = bad or _Bad(fld, f"{id_type} {raw!r} is not usable: {e.reason}")
    if not refs:
        raise bad or _Bad("profile", "no profile reference: give profile_id, id_type + id_value, or phone, email …")
    return refs


def _try_reference(
    rules: IdentityRules, given: Iterable[tuple[str, str, object]]
) -> tuple[list[tuple[str, str]], _Bad | None]:
    """:func:`_reference`, the problem returned: an item's value is checked even when its reference is
    bad, and a replace keeps the values of a profile whose item has a bad value."""
    try:
        return _reference(rules, given), None
    except _Bad as e:
        return [], e


def _shown(ref: tuple[str, str]) -> dict[str, str]:
    return {PROFILE_ID: ref[1]} if ref[0] == PROFILE_ID else {"id_type": ref[0], "id_value": ref[1]}


# -- the API's items -----------------------------------------------------------------------------

_ITEM_KEYS = ("value", PROFILE_ID, "id_type", "id_value")


def _api_item(tag: Tag, rules: IdentityRules, op: Op, index: int, raw: object) -> _Item:
    item = _Item(index)
    try:
        if not isinstance(raw, dict):
            raise _Bad("items", "an item is an object: {profile_id | id_type + id_value | phone | email …, value}")
        types = [t.name for t in rules.types]
        unknown = [k for k in raw if k not in _ITEM_KEYS and k not in types]
        if unknown:
            raise _Bad(str(unknown[0]), "unknown field: name a profile by profile_id, id_type + id_value, or an "
                       f"identifier type ({', '.join(types)})")  # fmt: skip
        given: list[tuple[str, str, object]] = []
        if PROFILE_ID in raw:
            given.append((PROFILE_ID, PROFILE_ID, raw[PROFILE_ID]))
        if "id_type" in raw or "id_value" in raw:
            id_type = raw.get("id_type")
            if not isinstance(id_type, str) or id_type not in types:
                raise _Bad("id_type", f"{id_type!r} is not an identifier type; known types: {', '.join(types)}")
            given.append(("id_value", id_type, raw.get("id_value")))
        given.extend((t, t, raw[t]) for t in types if t in raw)
        item.refs, bad_ref = _try_reference(rules, given)
        item.values = _values(tag, op, raw.get("value"), missing="value" not in raw)
        if bad_ref is not None:
            raise bad_ref
    except _Bad as e:
        item.field, item.error = e.field, e.reason
    return item


def parse_body(body: Any, *, allow_replace: bool = True) -> tuple[Op, list[Any]]:
    """``{"op": …, "items": [...]}`` → (op, items); 422 naming the field, 413 for too many items."""
    if not isinstance(body, dict):
        raise CatalogueError(422, "body", 'send {"op": "add", "items": [{"profile_id": …, "value": …}]}')
    unknown = sorted(set(body) - {"op", "items"})
    if unknown:
        raise CatalogueError(422, unknown[0], "unknown field (the body has op and items)")
    op = check_op(body.get("op", "add"), allow_replace=allow_replace)
    items = body.get("items")
    if not isinstance(items, list):
        raise CatalogueError(422, "items", "a list of {profile reference, value} objects")
    if len(items) > MAX_ITEMS:
        raise CatalogueError(413, "items", f"{len(items)} items: at most {MAX_ITEMS} in one call (import a file)")
    return op, items


def set_values(inst: Instance, tag_key: str, items: Sequence[Any], *, op: Op, trigger: str = "api",
               source: str = "api") -> SetReport:  # fmt: skip
    """Apply ``items`` (``{profile reference, value}`` objects) to the static tag ``tag_key``."""
    op = check_op(op)
    if len(items) > MAX_ITEMS:
        raise CatalogueError(413, "items", f"{len(items)} items: at most {MAX_ITEMS} in one call (import a file)")
    with inst.operational.session() as s:
        tag = settable_tag(s, tag_key)
    rules = get_rules(inst.operational)
    parsed = [_api_item(tag, rules, op, i, raw) for i, raw in enumerate(items)]
    return _apply(inst, tag, parsed, op=op, trigger=trigger, source=source, lines=False)


# -- files ---------------------------------------------------------------------------------------


def _decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding).removeprefix("\ufeff")
    except (UnicodeDecodeError, LookupError) as e:
        raise CatalogueError(422, "file", f"cannot read the file as {encoding}: {e}; try encoding=gbk") from None


def _header_roles(header: Sequence[str], tag: Tag, rules: IdentityRules) -> tuple[list[tuple[int, str]], int | None]:
    """(identifier columns as (column, id type or profile_id) in priority order, the value column)."""
    known = [t.name for t in rules.types]
    aliases: dict[str, str] = {h: PROFILE_ID for h in PROFILE_ID_HEADERS}
    for f in CUSTOMERS.fields:  # the importer's Chinese headers: 手机号, 邮箱, 会员号, 用户id …
        target = "user_id" if f.name == "customer_id" else f.name
        if target in known:
            for a in (f.name, *f.aliases):
                aliases.setdefault(a.lower(), target)
    aliases.update({t: t for t in known})
    value_names = {*VALUE_HEADERS, tag.key, tag.name.strip().lower(), tag.name_en.strip().lower()}
    ids: list[tuple[int, str]] = []
    value: int | None = None
    for i, name in enumerate(header):
        key = name.strip().lower()
        if key in value_names and value is None:
            value = i
        elif key in aliases:
            ids.append((i, aliases[key]))
    order = {PROFILE_ID: -1, **{t: n for n, t in enumerate(known)}}
    return sorted(ids, key=lambda c: (order[c[1]], c[0])), value


def import_values(inst: Instance, tag_key: str, data: bytes, *, op: Op = "add", encoding: str = "utf-8",
                  source: str = "file") -> SetReport:  # fmt: skip
    """Apply a CSV file of (identifier, value) to the static tag ``tag_key``.

    The header names the identifier columns (``profile_id``, ``phone`` / 手机号, ``email`` / 邮箱,
    ``user_id`` / 用户id …; a line matches by the first of them, in the identity rules' priority,
    that is known) and the value column (``value`` / 标签值, or the tag's key or name); a
    multi-valued tag's cell may hold several values separated by ``|``. For ``remove`` the value
    column is optional (without it, a line removes every value of its profile)."""
    op = check_op(op)
    with inst.operational.session() as s:
        tag = settable_tag(s, tag_key)
    rules = get_rules(inst.operational)
    reader = csv.reader(io.StringIO(_decode(data, encoding)))
    header = next(reader, None)
    if not header:
        raise CatalogueError(422, "file", "the file is empty")
    ids, value_col = _header_roles(header, tag, rules)
    if not ids:
        raise CatalogueError(422, "file", f"no column names a profile (header: {header!r}); name one profile_id, "
                             "phone / 手机号, email / 邮箱, user_id / 用户id …")  # fmt: skip
    if value_col is None and op != "remove":
        raise CatalogueError(422, "file", f"no value column (header: {header!r}); name it value or 标签值 "
                             f"(or the tag's key {tag.key!r})")  # fmt: skip
    parsed: list[_Item] = []
    seen: dict[str, list[str | None] | _Bad] = {}
    for cells in reader:
        if not any(c.strip() for c in cells):
            continue
        if len(parsed) >= MAX_FILE_ROWS:
            raise CatalogueError(413, "file", f"more than {MAX_FILE_ROWS} lines")
        item = _Item(reader.line_num)
        given = [(header[c], t, cells[c].strip()) for c, t in ids if c < len(cells) and cells[c].strip()]
        item.refs, bad_ref = _try_reference(rules, given)
        cell = cells[value_col].strip() if value_col is not None and value_col < len(cells) else ""
        checked = seen.get(cell)
        if checked is None:  # a file holds few distinct values: check each once
            try:
                raw = [v.strip() for v in cell.split(MULTI_SEPARATOR) if v.strip()] if tag.multi else cell
                checked = seen[cell] = _values(tag, op, raw or None, missing=not cell)
            except _Bad as e:
                checked = seen[cell] = _Bad(header[value_col] if value_col is not None else e.field, e.reason)
        if isinstance(checked, _Bad):
            item.field, item.error = checked.field, checked.reason
        elif bad_ref is not None:
            item.field, item.error = bad_ref.field, bad_ref.reason
        else:
            item.values = checked
        parsed.append(item)
    columns = {header[c]: t for c, t in ids} | ({header[value_col]: "value"} if value_col is not None else {})
    report = _apply(inst, tag, parsed, op=op, trigger="import", source=source, lines=True)
    report.columns = columns
    return report


# -- applying ------------------------------------------------------------------------------------

_RESOLVE = """
WITH direct AS (
    SELECT r.n, r.k, 0 AS via, p.profile_idx FROM _static_refs r JOIN profiles p ON p.profile_id = r.id_value
    WHERE r.id_type = 'profile_id'
), ident AS (
    SELECT r.n, r.k, 0 AS via, p.profile_idx FROM _static_refs r
    JOIN profile_identifiers i ON i.id_type = r.id_type AND i.id_value = r.id_value
    JOIN profiles p ON p.profile_idx = i.profile_idx
    WHERE r.id_type <> 'profile_id'
), redirected AS (  -- a merged-away profile id: the profile holding its anchor now, else the one it merged into
    SELECT r.n, r.k, 1 AS via, coalesce(pa.profile_idx, pm.profile_idx) AS profile_idx
    FROM _static_refs r JOIN profile_redirects d ON d.profile_id = r.id_value
    LEFT JOIN profile_identifiers i ON i.id_type = d.anchor_type AND i.id_value = d.anchor_value
    LEFT JOIN profiles pa ON pa.profile_idx = i.profile_idx
    LEFT JOIN profiles pm ON pm.profile_id = d.merged_into
    WHERE r.id_type = 'profile_id'
)
SELECT n, arg_min(profile_idx, k * 2 + via) FROM (
    SELECT * FROM direct UNION ALL SELECT * FROM ident UNION ALL SELECT * FROM redirected
) WHERE profile_idx IS NOT NULL GROUP BY n
"""


def _resolve(cur: duckdb.DuckDBPyConnection, items: Sequence[_Item]) -> dict[int, int]:
    """Item position → profile_idx, by the first of its references that names a profile."""
    n: list[int] = []
    k: list[int] = []
    types: list[str] = []
    values: list[str] = []
    for pos, item in enumerate(items):
        for order, (t, v) in enumerate(item.refs):
            n.append(pos)
            k.append(order)
            types.append(t)
            values.append(v)
    if not n:
        return {}
    refs = pa.table({"n": pa.array(n, pa.int64()), "k": pa.array(k, pa.int32()),
                     "id_type": pa.array(types, pa.string()), "id_value": pa.array(values, pa.string())})  # fmt: skip
    cur.register("_static_refs", refs)
    try:
        return {int(a): int(b) for a, b in cur.execute(_RESOLVE).fetchall()}
    finally:
        cur.unregister("_static_refs")


def _apply(inst: Instance, tag: Tag, items: Sequence[_Item], *, op: Op, trigger: str, source: str,
           lines: bool) -> SetReport:  # fmt: skip

    def problem(item: _Item, reason: str) -> Problem:
        ref = _shown(item.refs[0]) if item.refs else None
        return Problem(index=None if lines else item.at, line=item.at if lines else None, field=item.field,
                       reference=ref, reason=reason)  # fmt: skip

    started = inst.clock.now()
    cur = inst.analytic.cursor()
    try:
        with inst.analytic.transaction(cur) as tx:
            found = _resolve(tx, items)
            rows: list[tuple[int, str | None]] = []
            failed_profiles: set[int] = set()
            unmatched: list[Problem] = []
            invalid: list[Problem] = []
            applied = n_unmatched = n_invalid = 0
            for pos, item in enumerate(items):
                if item.error is not None:
                    n_invalid += 1
                    if n_invalid <= MAX_REPORTED:
                        invalid.append(problem(item, item.error))
                    if pos in found:
                        failed_profiles.add(found[pos])
                elif pos not in found:
                    n_unmatched += 1
                    if n_unmatched <= MAX_REPORTED:
                        what = ", ".join(f"{t} {v}" for t, v in item.refs)
                        unmatched.append(problem(item, f"no profile has {what}"))
                else:
                    applied += 1
                    profile = found[pos]
                    rows.extend((profile, v) for v in item.values)
            if op == "replace" and items and not applied:
                raise CatalogueError(422, "items", "no item is valid and matched: a replace would remove every value "
                                     "of the tag (to clear it on purpose, replace with an empty list)")  # fmt: skip
            if not tag.multi and op != "remove":  # the last value given for a profile wins
                last = {p: v for p, v in rows}
                rows = list(last.items())
            keep = sorted(failed_profiles - {p for p, _ in rows}) if op == "replace" else []
            if keep:  # in a replace, a profile whose every item failed keeps its values
                rows.extend(tx.execute("SELECT profile_idx, value FROM profile_tags WHERE tag_key = $key AND "
                                       "list_contains($keep, profile_idx)", {"key": tag.key, "keep": keep}).fetchall())  # fmt: skip
            details = {"source": source, "op": op, "items": len(items), "applied": applied,
                       "unmatched": n_unmatched, "invalid": n_invalid}  # fmt: skip
            scoped = tag_values.stage_assignment(tx, tag, rows, op)
            try:
                (run,) = tag_values.swap(tx, [tag], trigger=trigger, started_at=started, now=inst.clock.now(),
                                         scoped=scoped, details={tag.key: details})  # fmt: skip
            except TagRunError as e:
                raise CatalogueError(422, "items", str(e)) from None
    finally:
        cur.close()
    return SetReport(tag_key=tag.key, op=op, items=len(items), applied=applied, unmatched_total=n_unmatched,
                     invalid_total=n_invalid, unmatched=unmatched, invalid=invalid, run=run)  # fmt: skip


# -- tag API keys and what they may do -----------------------------------------------------------


class ApiKeyDraft(BaseModel):
    """A tag API key to create: categories it may read and write (``*`` = all; sub-categories included)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="who uses it, e.g. CRM 系统")
    read: list[str] = Field(default_factory=list, max_length=200)
    write: list[str] = Field(default_factory=list, max_length=200)

    @field_validator("read", "write")
    @classmethod
    def _distinct(cls, v: list[str]) -> list[str]:
        return list(dict.fromkeys(x.strip() for x in v))


class ApiKey(BaseModel):
    id: int
    name: str
    prefix: str = Field(description="the key's first characters, to recognise it")
    read: list[str]
    write: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class IssuedApiKey(ApiKey):
    key: str = Field(description="the secret, shown once: send it as Authorization: Bearer …")


def _is_tag_key(info: tokens.TokenInfo) -> bool:
    return bool(info.scopes) and all(s.startswith((tokens.TAG_READ, tokens.TAG_WRITE)) for s in info.scopes)


def _api_key(info: tokens.TokenInfo) -> ApiKey:
    return ApiKey(id=info.id, name=info.name, prefix=info.prefix, created_at=info.created_at, revoked_at=info.revoked_at,
                  read=[s.removeprefix(tokens.TAG_READ) for s in info.scopes if s.startswith(tokens.TAG_READ)],
                  write=[s.removeprefix(tokens.TAG_WRITE) for s in info.scopes if s.startswith(tokens.TAG_WRITE)])  # fmt: skip


def create_api_key(*, session: Session, body: Any, now: datetime) -> IssuedApiKey:
    """A tag API key for the open tag API; the categories must exist (or be ``*``)."""
    try:
        draft = ApiKeyDraft.model_validate(body)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        raise CatalogueError(422, ".".join(str(p) for p in err["loc"]) or "body", str(err["msg"])) from None
    if not draft.read and not draft.write:
        raise CatalogueError(422, "read", "give the categories the key may read or write (or '*')")
    have = {c.key for c in list_categories(session=session, now=now)}
    for fld, keys in (("read", draft.read), ("write", draft.write)):
        for i, k in enumerate(keys):
            if k != "*" and k not in have:
                raise CatalogueError(422, f"{fld}[{i}]", f"no category {k!r} (known: {', '.join(sorted(have))}, or *)")
    scopes = [tokens.TAG_READ + k for k in draft.read] + [tokens.TAG_WRITE + k for k in draft.write]
    issued = tokens.create_token(session=session, name=draft.name, now=now, scopes=scopes)
    info = tokens.get_token(session=session, token_id=issued.id)
    assert info is not None
    return IssuedApiKey(**_api_key(info).model_dump(), key=issued.token)


def list_api_keys(*, session: Session) -> list[ApiKey]:
    """Every tag API key (revoked ones too), without secrets."""
    return [_api_key(t) for t in tokens.list_tokens(session=session) if _is_tag_key(t)]


def revoke_api_key(*, session: Session, key_id: int, now: datetime) -> ApiKey:
    info = tokens.get_token(session=session, token_id=key_id)
    if info is None or not _is_tag_key(info):
        raise CatalogueError(404, "id", f"no tag API key {key_id}")
    tokens.revoke_token(session=session, token_id=key_id, now=now)
    session.flush()
    info = tokens.get_token(session=session, token_id=key_id)
    assert info is not None
    return _api_key(info)


@dataclass(frozen=True)
class Access:
    """The categories a key may read and write, sub-categories included."""

    read: frozenset[str]
    write: frozenset[str]
    names: dict[str, str]  # category key → "name (key)", for messages

    def can_read(self, tag: Tag) -> bool:
        return tag.category in self.read

    def can_write(self, tag: Tag) -> bool:
        return tag.category in self.write


def access(*, session: Session, scopes: Sequence[str], now: datetime) -> Access:
    """What ``scopes`` allow, on the category tree as it is now (``admin``: everything)."""
    cats = list_categories(session=session, now=now)
    parent = {c.key: c.parent for c in cats}

    def covered(granted: set[str]) -> frozenset[str]:
        if "*" in granted or tokens.ADMIN_SCOPE in scopes:
            return frozenset(parent)
        out = set()
        for key in parent:
            node: str | None = key
            seen: set[str] = set()
            while node is not None and node not in seen:
                if node in granted:
                    out.add(key)
                    break
                seen.add(node)
                node = parent.get(node)
        return frozenset(out)

    read = {s.removeprefix(tokens.TAG_READ) for s in scopes if s.startswith(tokens.TAG_READ)}
    write = {s.removeprefix(tokens.TAG_WRITE) for s in scopes if s.startswith(tokens.TAG_WRITE)}
    return Access(covered(read), covered(write), {c.key: f"{c.name} ({c.key})" for c in cats})


# -- the open tag API ----------------------------------------------------------------------------


class OpenTag(BaseModel):
    """A tag definition as the open tag API shows it."""

    key: str
    name: str
    name_en: str
    description: str | None = None
    category: str
    kind: str
    value_type: str
    enum_values: list[str] | None = None
    multi: bool
    status: str
    readable: bool
    writable: bool = Field(description="static and in a category the key may write")


class OpenTagValue(BaseModel):
    key: str
    name: str
    name_en: str
    category: str
    kind: str
    value_type: str
    multi: bool
    values: list[str | bool | int | float]
    updated_at: datetime


class OpenProfile(BaseModel):
    profile_id: str
    redirected_from: str | None = None
    tags: list[OpenTagValue]


def definitions(*, session: Session, allowed: Access) -> list[OpenTag]:
    """Tags (not archived) the key may read or write."""
    out = []
    for t in list_tags(session=session):
        readable, writable = allowed.can_read(t), allowed.can_write(t) and t.kind == "static"
        if t.status != "archived" and (readable or writable):
            out.append(OpenTag(**t.model_dump(include=set(OpenTag.model_fields)), readable=readable, writable=writable))
    return out


def writable_tag(*, session: Session, allowed: Access, key: str) -> Tag:
    """The tag ``key`` if the key may write its category (403 naming the category otherwise)."""
    tag = get_tag(session=session, key=key)
    if not allowed.can_write(tag):
        name = allowed.names.get(tag.category, tag.category)
        raise CatalogueError(403, "category", f"this key may not write tags of category {name} (tag {key!r})")
    return settable_tag(session, key)


def typed(tag: Tag, text: str) -> str | bool | int | float:
    """A stored value as its type (numbers and bools as JSON numbers and booleans)."""
    if tag.value_type == "bool":
        return text == "true"
    if tag.value_type == "number" and _NUMBER.fullmatch(text):
        return int(text) if _INT.fullmatch(text) else float(text)
    return text


def profile_values(inst: Instance, *, allowed: Access, profile_id: str | None = None, id_type: str | None = None,
                   id_value: str | None = None) -> OpenProfile:  # fmt: skip
    """The values of tags the key may read, of one profile (by id, or by an identifier)."""
    if profile_id is None and (id_type is None or id_value is None):
        raise CatalogueError(422, "id_type", "name the profile by its id, or by id_type and id_value")
    rules = get_rules(inst.operational)
    if id_type is not None and id_type not in {t.name for t in rules.types}:
        known = ", ".join(t.name for t in rules.types)
        raise CatalogueError(422, "id_type", f"{id_type!r} is not an identifier type; known types: {known}")
    with inst.operational.session() as s:
        tags = {t.key: t for t in list_tags(session=s) if t.status != "archived" and allowed.can_read(t)}
    cur = inst.analytic.cursor()
    try:
        try:
            ref = find_profile(cur, rules=rules, profile_id=profile_id,
                               identifier=None if profile_id is not None else f"{id_type}:{id_value}")  # fmt: skip
        except ProfileViewError as e:
            raise CatalogueError(422, "id_value" if e.field == "identifier" else e.field, e.message) from None
        if ref is None:
            shown = profile_id if profile_id is not None else f"{id_type} {id_value}"
            raise CatalogueError(404, "profile", f"no profile {shown}")
        held: dict[str, list[tuple[str, datetime]]] = {}
        for key, value, at in tag_values.profile_tags(cur, ref.profile_idx):
            if key in tags:
                held.setdefault(key, []).append((value, at))
    finally:
        cur.close()
    out = [OpenTagValue(**tags[k].model_dump(include=set(OpenTagValue.model_fields) - {"values", "updated_at"}),
                        values=[typed(tags[k], v) for v, _ in vs], updated_at=max(at for _, at in vs))
           for k, vs in sorted(held.items())]  # fmt: skip
    return OpenProfile(profile_id=ref.profile_id, redirected_from=ref.redirected_from, tags=out)
