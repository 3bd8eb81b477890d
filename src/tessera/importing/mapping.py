"""Which file column feeds which field (字段映射). Pure: no I/O but reading a mapping file.

Precedence, per field: an explicit mapping (``--map 订单编号=order_id`` or the mapping file) →
a column named like the field (case, spaces, ``camelCase`` and a bracketed unit such as ``(元)``
ignored) → a column named like one of the field's aliases (``手机号`` → ``phone``). Columns left
over go into the kind's JSON column (``attributes``; ``properties`` for events) under their own
name. A mapping value ``attributes.<key>`` renames a leftover; ``null``, ``""`` or ``-`` drops
the column.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tessera.importing.kinds import Kind
from tessera.importing.report import ImportUsageError

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_BRACKETED = re.compile(r"[(（\[【][^)）\]】]*[)）\]】]\s*$")
_SEPARATORS = re.compile(r"[\s\-./:：·]+")
_IGNORE_VALUES = {"", "-", "ignore", "skip"}


def normalise_name(name: str) -> str:
    """``'Order ID'``, ``'orderId'``, ``'order-id'`` → ``'order_id'``; ``'实付金额(元)'`` → ``'实付金额'``."""
    text = name.strip().lstrip("\ufeff")
    text = _BRACKETED.sub("", text).strip() or text
    text = _CAMEL.sub("_", text).lower()
    return _SEPARATORS.sub("_", text).strip("_")


@dataclass(frozen=True)
class MappingFile:
    """A mapping file: ``columns`` (file column → field), ``defaults`` (field → value), options."""

    columns: dict[str, str | None] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    kind: str | None = None
    encoding: str | None = None
    file_format: str | None = None
    timezone: str | None = None


def load_mapping_file(path: Path) -> MappingFile:
    """Read a YAML or JSON mapping file (see docs/import.md)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ImportUsageError("mapping", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ImportUsageError("mapping", f"{path.name} is not valid YAML/JSON: {exc}") from None
    return mapping_from_data(data, where=path.name)


def mapping_from_data(data: Any, *, where: str = "mapping") -> MappingFile:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ImportUsageError("mapping", f"{where} must be an object with 'columns' and/or 'defaults'")
    unknown = set(data) - {"columns", "defaults", "kind", "encoding", "format", "timezone"}
    if unknown:
        raise ImportUsageError(
            "mapping", f"{where}: unknown key(s) {sorted(unknown)}; expected columns, defaults, kind, encoding, "
            "format, timezone"
        )  # fmt: skip
    columns = data.get("columns") or {}
    defaults = data.get("defaults") or {}
    if not isinstance(columns, dict) or not all(isinstance(v, str | None) for v in columns.values()):
        raise ImportUsageError("mapping", f"{where}: 'columns' must map file columns to field names")
    if not isinstance(defaults, dict) or not all(_scalar(v) for v in defaults.values()):
        raise ImportUsageError("mapping", f"{where}: 'defaults' must map field names to single values")
    options: dict[str, str | None] = {}
    for key in ("kind", "encoding", "format", "timezone"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ImportUsageError("mapping", f"{where}: '{key}' must be a string")
        options[key] = value
    return MappingFile(
        columns={str(k): v for k, v in columns.items()},
        defaults={str(k): v for k, v in defaults.items()},
        kind=options["kind"],
        encoding=options["encoding"],
        file_format=options["format"],
        timezone=options["timezone"],
    )


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def parse_map_options(items: Iterable[str]) -> dict[str, str | None]:
    """``["订单编号=order_id", "备注="]`` → ``{"订单编号": "order_id", "备注": None}``."""
    out: dict[str, str | None] = {}
    for item in items:
        column, sep, target = item.rpartition("=")
        if not sep or not column.strip():
            raise ImportUsageError("map", f"--map {item!r} must look like FILE_COLUMN=field")
        target = target.strip()
        out[column.strip()] = None if target.lower() in _IGNORE_VALUES else target
    return out


def parse_default_options(items: Iterable[str]) -> dict[str, str]:
    """``["currency=CNY"]`` → ``{"currency": "CNY"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ImportUsageError("default", f"--default {item!r} must look like field=value")
        out[name.strip()] = value
    return out


@dataclass(frozen=True)
class ColumnPlan:
    """The resolved mapping of one file onto one kind."""

    kind: Kind
    #: target field → file column
    fields: dict[str, str]
    #: (key in the JSON column, file column) for columns no field takes
    extras: list[tuple[str, str]]
    #: target field → constant used where the file has no column or an empty cell
    defaults: dict[str, Any]
    #: file columns dropped on purpose
    ignored: list[str]
    #: how each field was found: "mapped", "name", "alias"
    how: dict[str, str] = field(default_factory=dict)
    #: target field → a second file column read where the first is empty (events: ``name``)
    secondary: dict[str, str] = field(default_factory=dict)


class MissingColumns(ValueError):
    """The file lacks a column the kind needs; the message names it and lists the file's columns."""


def _find_column(name: str, columns: list[str]) -> str | None:
    if name in columns:
        return name
    folded = [c for c in columns if c.strip().lower() == name.strip().lower()]
    if len(folded) == 1:
        return folded[0]
    normal = [c for c in columns if normalise_name(c) == normalise_name(name)]
    return normal[0] if len(normal) == 1 else None


def resolve(
    kind: Kind,
    columns: list[str],
    mapping: Mapping[str, str | None] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> ColumnPlan:
    """Map ``columns`` (the file's, in order) onto ``kind``; raise on a bad mapping or missing column."""
    extras_prefix = kind.extras + "."
    fields: dict[str, str] = {}
    how: dict[str, str] = {}
    extras: list[tuple[str, str]] = []
    ignored: list[str] = []
    taken: set[str] = set()
    for file_col, target in (mapping or {}).items():
        column = _find_column(file_col, columns)
        if column is None:
            raise ImportUsageError(
                "mapping", f"the file has no column {file_col!r}; its columns are: {_listing(columns)}"
            )
        if column in taken:
            raise ImportUsageError("mapping", f"column {column!r} is mapped twice")
        taken.add(column)
        if target is None or target.strip().lower() in _IGNORE_VALUES:
            ignored.append(column)
            continue
        target = target.strip()
        if target.startswith(extras_prefix) and len(target) > len(extras_prefix):
            extras.append((target[len(extras_prefix) :], column))
            continue
        if target not in kind.by_name:
            raise ImportUsageError(
                "mapping",
                f"{target!r} is not a field of {kind.name}; fields: {', '.join(kind.by_name)} "
                f"(or {extras_prefix}<key>, or empty to drop the column)",
            )
        if target in fields:
            raise ImportUsageError("mapping", f"field {target!r} is mapped from {fields[target]!r} and {column!r}")
        fields[target] = column
        how[target] = "mapped"

    free = [c for c in columns if c not in taken]
    by_norm: dict[str, str] = {}
    for c in free:
        by_norm.setdefault(normalise_name(c), c)
    for f in kind.fields:  # a column named like the field
        if f.name in fields:
            continue
        column = by_norm.get(f.name)
        if column is not None and column not in taken:
            fields[f.name] = column
            how[f.name] = "name"
            taken.add(column)
    for f in kind.fields:  # a column named like one of its aliases
        if f.name in fields:
            continue
        for alias in f.aliases:
            column = by_norm.get(normalise_name(alias))
            if column is not None and column not in taken:
                fields[f.name] = column
                how[f.name] = "alias"
                taken.add(column)
                break
    secondary: dict[str, str] = {}
    for name, other in kind.secondary:
        column = by_norm.get(other)
        if name in fields and column is not None and column not in taken:
            secondary[name] = column
            taken.add(column)
    extras.extend((c, c) for c in columns if c not in taken)
    keys = [k for k, _ in extras]
    clash = sorted({k for k in keys if keys.count(k) > 1})
    if clash:
        raise ImportUsageError("mapping", f"two columns would both go to {kind.extras}.{clash[0]}; rename one")

    clean_defaults: dict[str, Any] = {}
    for name, value in (defaults or {}).items():
        if name not in kind.by_name:
            raise ImportUsageError(
                "defaults", f"{name!r} is not a field of {kind.name}; fields: {', '.join(kind.by_name)}"
            )
        if not _scalar(value):
            raise ImportUsageError("defaults", f"the default of {name!r} must be a single value")
        if value is not None and value != "":
            clean_defaults[name] = value

    plan = ColumnPlan(
        kind=kind, fields=fields, extras=extras, defaults=clean_defaults, ignored=ignored, how=how, secondary=secondary
    )
    _check_required(plan, columns)
    return plan


def _listing(columns: list[str]) -> str:
    shown = ", ".join(repr(c) for c in columns[:40])
    return shown + (f" … ({len(columns)} in all)" if len(columns) > 40 else "") if columns else "(none)"


def _check_required(plan: ColumnPlan, columns: list[str]) -> None:
    kind = plan.kind
    have = set(plan.fields) | set(plan.defaults)
    for name in kind.required:
        if name not in have:
            aliases = kind.by_name[name].aliases[:4]
            hint = f" (also recognised: {', '.join(aliases)})" if aliases else ""
            raise MissingColumns(
                f"{kind.name} need a column {name!r}{hint}; the file's columns are: {_listing(columns)}. "
                f"Map one with --map COLUMN={name} or give --default {name}=VALUE"
            )
    for group in kind.needs_one_of:
        if not have.intersection(group):
            raise MissingColumns(
                f"{kind.name} need a column {' or '.join(repr(g) for g in group)}; "
                f"the file's columns are: {_listing(columns)}. Map one with --map COLUMN={group[0]}"
            )
