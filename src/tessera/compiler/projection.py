"""Chosen attribute columns (导出字段 / 推送变量): what export, push and insight show of a set of profiles.

A column is named by a short text (the output column keeps that name):

* ``profile_id`` — always the first column, whether chosen or not;
* a computed field (:data:`~tessera.domain.conditions.COMPUTED_FIELDS`): ``created_at``,
  ``first_seen``, ``last_seen``, ``first_order_at``, ``last_order_at``, ``event_count``,
  ``order_count``, ``total_spend``, ``channels`` (the list joined with ``|``);
* a trait: any other plain name (``city``, ``member_level``, ``会员等级``), or explicitly
  ``traits.<key>`` (also for a trait named like a computed field); read as text — a JSON string as
  is, another value as its JSON text;
* ``id:<type>`` — the profile's most recently linked identifier of that type (``id:phone``,
  ``id:email``, ``id:wechat_openid``; latest ``linked_at``, then ``last_seen``, then the greatest
  value); ``ids:<type>`` — all of them, sorted, joined with ``|``;
* ``tag:<key>`` — the profile's current values of a tag, sorted, joined with ``|``.

A name that fits none of these (an unknown ``xxx:`` prefix, an empty key, control characters, a
malformed identifier type, or — when the workspace's types are given — an unknown one) raises
:class:`ProjectionError` naming the column.

**Hashed identifiers for ad platforms** (``hash_identifiers=True``): phone and email identifier
values become the lowercase hex SHA-256 of their normalised text, computed in the database:

* email: trimmed and lower-cased — ``sha256(lower(trim(value)))``;
* phone: the E.164 number (identifiers are stored as ``+8613800138000``) with everything but its
  digits removed — ``sha256('8613800138000')``, what Meta's Custom Audiences expect. Google
  Customer Match documents the E.164 form *with* the plus sign: pass ``phone_format="e164"`` to
  hash ``'+8613800138000'`` instead.

Which types are phones or emails comes from ``id_types`` (name → kind, from the identity rules;
by default ``phone`` and ``email``). Other identifiers are left as they are. Trait columns that
usually hold raw contact data (``phone``, ``mobile``, ``email``) are refused while hashing: they
are not normalised, so choose ``id:phone`` / ``id:email``.

Everything a user writes (trait keys, tag keys, identifier types) enters the SQL as a bound
parameter; the output names are quoted identifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Literal

import sqlglot
from sqlglot import exp

from tessera.compiler.query import Params, Query
from tessera.domain.conditions import COMPUTED_FIELDS

ColumnKind = Literal["computed", "trait", "identifier", "identifiers", "tag"]
PhoneFormat = Literal["digits", "e164"]

#: Identifier kinds by type when the workspace's rules are not given (only hashing needs them).
DEFAULT_ID_KINDS: Mapping[str, str] = {"phone": "phone", "email": "email"}
#: Trait keys refused while hashing: raw contact data that the identity layer has not normalised.
RAW_CONTACT_TRAITS = frozenset({"phone", "mobile", "email"})
#: Joins multi-valued columns (``channels``, ``ids:…``, ``tag:…``); written into the SQL below.
SEPARATOR = "|"
# (A sorted list joined is about twice as fast in DuckDB as string_agg(DISTINCT … ORDER BY …).)
MAX_COLUMNS = 200
MAX_NAME = 200

#: Names of the computed fields for people (zh, en).
COMPUTED_LABELS: Mapping[str, tuple[str, str]] = {
    "profile_id": ("用户ID", "Profile ID"),
    "created_at": ("创建时间", "Created at"),
    "first_seen": ("首次出现", "First seen"),
    "last_seen": ("最近出现", "Last seen"),
    "first_order_at": ("首单时间", "First order at"),
    "last_order_at": ("最近下单时间", "Last order at"),
    "event_count": ("事件数", "Events"),
    "order_count": ("订单数", "Orders"),
    "total_spend": ("累计消费", "Total spend"),
    "channels": ("渠道", "Channels"),
}

_ID_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_PREFIX = re.compile(r"^([A-Za-z_]\w*):")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class ProjectionError(ValueError):
    """A column name that cannot be projected; ``column`` is the name as written."""

    def __init__(self, column: str, message: str) -> None:
        super().__init__(f"column {column!r}: {message}")
        self.column = column
        self.message = message


@dataclass(frozen=True)
class ColumnSpec:
    """One chosen column: its output ``name`` (as written), what it reads, and the ``key`` read
    (computed field, trait key, identifier type or tag key)."""

    name: str
    kind: ColumnKind
    key: str

    def label(self, lang: Literal["zh", "en"] = "zh") -> str:
        """A heading for people: the computed field's name in ``lang``, otherwise the column name."""
        if self.kind == "computed" and self.key in COMPUTED_LABELS:
            zh, en = COMPUTED_LABELS[self.key]
            return zh if lang == "zh" else en
        return self.name


def parse_column(name: str, *, id_types: Mapping[str, str] | None = None) -> ColumnSpec:
    """What the column ``name`` reads; raises :class:`ProjectionError`.

    ``id_types``: the workspace's identifier types (name → kind); when given, ``id:``/``ids:`` must
    name one of them.
    """
    if not isinstance(name, str):
        raise ProjectionError(str(name), "a column name is text")
    name = name.strip()
    if not name:
        raise ProjectionError(name, "is empty")
    if len(name) > MAX_NAME:
        raise ProjectionError(name[:40] + "…", f"longer than {MAX_NAME} characters")
    if _CONTROL.search(name):
        raise ProjectionError(name, "contains control characters")
    if name.startswith("traits."):
        key = name[len("traits.") :]
        if not key:
            raise ProjectionError(name, "traits. needs a trait key, e.g. traits.city")
        return ColumnSpec(name, "trait", key)
    prefix = _PREFIX.match(name)
    if prefix is None:
        return ColumnSpec(name, "computed", name) if name in COMPUTED_FIELDS else ColumnSpec(name, "trait", name)
    kind, rest = prefix.group(1), name[prefix.end() :]
    if kind in ("id", "ids"):
        if not _ID_TYPE.match(rest):
            raise ProjectionError(name, f"{kind}: needs an identifier type such as phone, email or wechat_openid")
        if id_types is not None and rest not in id_types:
            known = ", ".join(sorted(id_types))
            raise ProjectionError(name, f"{rest!r} is not an identifier type; known types: {known}")
        return ColumnSpec(name, "identifier" if kind == "id" else "identifiers", rest)
    if kind == "tag":
        if not rest.strip():
            raise ProjectionError(name, "tag: needs a tag key, e.g. tag:rfm_segment")
        return ColumnSpec(name, "tag", rest)
    raise ProjectionError(
        name, f"unknown prefix {kind + ':'!r}; use id:, ids:, tag:, or traits.{name} for a trait with a colon"
    )


def parse_columns(names: Iterable[str | ColumnSpec], *, id_types: Mapping[str, str] | None = None) -> list[ColumnSpec]:
    """The chosen columns, in order, without ``profile_id`` (always first anyway); refuses
    duplicates and more than :data:`MAX_COLUMNS`."""
    out: list[ColumnSpec] = []
    seen: set[str] = set()
    for item in names:
        spec = item if isinstance(item, ColumnSpec) else parse_column(item, id_types=id_types)
        if spec.kind == "computed" and spec.key == "profile_id":
            continue
        if spec.name in seen or spec.name == "profile_id":
            raise ProjectionError(spec.name, "chosen twice")
        seen.add(spec.name)
        out.append(spec)
        if len(out) > MAX_COLUMNS:
            raise ProjectionError(spec.name, f"at most {MAX_COLUMNS} columns")
    return out


# -- SQL -------------------------------------------------------------------------------------------


@cache
def _template(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="duckdb")


def _fill(sql: str, **values: exp.Expr) -> exp.Expr:
    """A fragment of DuckDB SQL with its ``:name`` placeholders replaced by expressions."""
    return exp.replace_placeholders(_template(sql).copy(), **{k: v.copy() for k, v in values.items()})


def _hash(value: exp.Expr, kind: str | None, phone_format: PhoneFormat) -> exp.Expr:
    if kind == "email":
        return _fill("sha256(lower(trim(:v)))", v=value)
    if kind == "phone":
        if phone_format == "e164":
            return _fill("sha256('+' || regexp_replace(:v, '[^0-9]', '', 'g'))", v=value)
        return _fill("sha256(regexp_replace(:v, '[^0-9]', '', 'g'))", v=value)
    return value


def trait_text(key: str, params: Params) -> exp.Expr:
    """The trait ``key`` of ``a.traits`` as text (a string as is, anything else its JSON text); the
    key, whatever characters it holds, is a bound JSON path."""
    return exp.func("json_extract_string", exp.column("traits", table="a"), params.add(_trait_path(key)))


def _trait_path(key: str) -> str:
    """A JSON path reading the top-level ``key`` whatever characters it holds (``$."a.b"``)."""
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _computed(name: str, key: str) -> exp.Expr:
    if key == "created_at":
        return exp.column("created_at", table="p")
    if key == "channels":
        return _fill("array_to_string(list_sort(a.channels), '|')")
    if key not in COMPUTED_FIELDS:
        raise ProjectionError(name, f"{key!r} is not a computed field")
    return exp.column(key, table="a")


def project(
    members: exp.Query,
    columns: Sequence[str | ColumnSpec],
    params: Params,
    *,
    hash_identifiers: bool = False,
    phone_format: PhoneFormat = "digits",
    id_types: Mapping[str, str] | None = None,
) -> Query:
    """``profile_id`` and the chosen columns for each profile ``members`` selects (a query whose
    one column is ``profile_idx``; duplicates are fine), ordered by ``profile_idx``.

    ``params``: the Params ``members`` was built with (new values are added to it).
    ``id_types``: identifier type → kind (``phone``/``email``/``id``), from the identity rules;
    validates ``id:``/``ids:`` columns and says which ones to hash.
    """
    specs = parse_columns(columns, id_types=id_types)
    kinds = id_types if id_types is not None else DEFAULT_ID_KINDS
    if hash_identifiers:
        for spec in specs:
            if spec.kind == "trait" and spec.key.lower() in RAW_CONTACT_TRAITS:
                raise ProjectionError(
                    spec.name, "holds raw contact data, which is not hashed; choose id:phone or id:email instead"
                )

    type_params: dict[str, exp.Placeholder] = {}
    tag_params: dict[str, exp.Placeholder] = {}
    id_columns: list[exp.Expr] = []
    tag_columns: list[exp.Expr] = []
    selects: list[exp.Expr] = [exp.column("profile_id", table="p").as_("profile_id")]
    for n, spec in enumerate(specs, start=1):
        inner = f"c{n}"
        value: exp.Expr
        if spec.kind == "computed":
            value = _computed(spec.name, spec.key)
        elif spec.kind == "trait":
            value = trait_text(spec.key, params)
        elif spec.kind in ("identifier", "identifiers"):
            if spec.key not in type_params:
                type_params[spec.key] = params.add(spec.key)
            t = type_params[spec.key]
            kind = kinds.get(spec.key) if hash_identifiers else None
            if spec.kind == "identifier":
                latest = _fill(
                    "arg_max(i.id_value, struct_pack(l := coalesce(epoch_us(i.linked_at), -1),"
                    " s := coalesce(epoch_us(i.last_seen), -1), v := i.id_value)) FILTER (WHERE i.id_type = :t)",
                    t=t,
                )
                id_columns.append(_hash(latest, kind, phone_format).as_(inner))
            else:
                v = _hash(exp.column("id_value", table="i"), kind, phone_format)
                every = _fill(
                    "array_to_string(list_sort(list_distinct(list(:v) FILTER (WHERE i.id_type = :t))), '|')", v=v, t=t
                )
                id_columns.append(every.as_(inner))
            value = exp.column(inner, table="_ids")
        else:
            if spec.key not in tag_params:
                tag_params[spec.key] = params.add(spec.key)
            k = tag_params[spec.key]
            agg = _fill(
                "array_to_string(list_sort(list_distinct(list(t.value) FILTER (WHERE t.tag_key = :k))), '|')", k=k
            )
            tag_columns.append(agg.as_(inner))
            value = exp.column(inner, table="_tags")
        selects.append(value.as_(exp.to_identifier(spec.name, quoted=True)))

    member_set = exp.select("profile_idx").distinct().from_(exp.Subquery(this=members.copy(), alias="src"))
    tree = (
        exp.select(*selects)
        .with_("_members", as_=member_set)
        .from_("_members AS m")
        .join("profiles AS p", on="p.profile_idx = m.profile_idx")
        .join("profile_attributes AS a", on="a.profile_idx = m.profile_idx", join_type="left")
    )
    for name, table, alias, key, wanted, picked in (
        ("_ids", "profile_identifiers", "i", "id_type", type_params, id_columns),
        ("_tags", "profile_tags", "t", "tag_key", tag_params, tag_columns),
    ):
        if picked:
            tree = tree.with_(name, as_=_per_member(table, alias, key, [p.copy() for p in wanted.values()], picked))
            tree = tree.join(name, on=f"{name}.profile_idx = m.profile_idx", join_type="left")
    return Query(tree=tree.order_by("m.profile_idx"), params=dict(params.values))


def _per_member(table: str, alias: str, key: str, wanted: list[exp.Expr], columns: list[exp.Expr]) -> exp.Select:
    """One row per member: ``columns`` (over ``alias``) aggregated over the member's rows of
    ``table`` whose ``key`` is one of ``wanted`` (identifier types, tag keys)."""
    return (
        exp.select(f"{alias}.profile_idx", *columns)
        .from_(f"{table} AS {alias}")
        .join(f"_members AS {alias}m", on=f"{alias}m.profile_idx = {alias}.profile_idx")
        .where(exp.column(key, table=alias).isin(*wanted))
        .group_by(f"{alias}.profile_idx")
    )
