"""The tag catalogue (标签体系): categories and tag definitions, as data.

Tags are "the base of digital marketing" (the seeds): every tag lives in a category of a tree
(基础信息 basic info, 用户行为 behaviour, 业务偏好 preference, 场景 scenario, 生命周期 lifecycle,
价值 value, 预测 predictive by default), has a stable ``key`` that conditions name
(``{"type": "tag", "tag": "rfm_group", …}``), display names in zh and en, an owner, a value type,
single- or multi-valued, a kind (static 静态 / rule 规则 / sql / model 模型), an optional cron
schedule, and a status (draft → active → archived).

How values come about depends on the kind: a **static** tag's values are set (API, file, open tag
API); a **rule** tag has ordered ``rules`` — (value, condition) pairs in the condition language,
first match wins for a single-valued tag, every match adds its value to a multi-valued one; a
**sql** tag has one read-only ``sql`` SELECT returning (profile key, value); a **model** tag names a
``model`` (RFM, lifecycle, CLV …, see :mod:`tessera.tagmodels`) and its parameters.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tessera.domain.conditions import ConditionError, TagLeaf, leaves, parse_condition

ValueType = Literal["bool", "enum", "number", "string", "date"]
TagKind = Literal["static", "rule", "sql", "model"]
TagStatus = Literal["draft", "active", "archived"]
KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


class CategoryDraft(BaseModel):
    """A category of the catalogue tree (标签分类)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="lower-case letters, digits and _ (e.g. lifecycle)")
    name: str = Field(min_length=1, max_length=100, description="display name (zh)")
    name_en: str = Field(min_length=1, max_length=100)
    parent: str | None = Field(default=None, description="the parent category's key; none = top level")
    position: int = Field(default=0, ge=0, le=10_000)

    @field_validator("key", "parent")
    @classmethod
    def _key(cls, v: str | None) -> str | None:
        if v is not None and not KEY.match(v):
            raise ValueError("must be 1-63 lower-case letters, digits or _, starting with a letter")
        return v


class Category(CategoryDraft):
    created_at: datetime


#: The seeds' categories, created on first use.
DEFAULT_CATEGORIES: tuple[CategoryDraft, ...] = tuple(
    CategoryDraft(key=k, name=zh, name_en=en, position=i)
    for i, (k, zh, en) in enumerate(
        (
            ("basic", "基础信息", "Basic info"),
            ("behaviour", "用户行为", "Behaviour"),
            ("preference", "业务偏好", "Preference"),
            ("scenario", "场景", "Scenario"),
            ("lifecycle", "生命周期", "Lifecycle"),
            ("value", "价值", "Value"),
            ("predictive", "预测", "Predictive"),
        )
    )
)


class Rule(BaseModel):
    """One (value, condition) pair of a rule tag (规则): profiles the condition selects get ``value``."""

    model_config = ConfigDict(extra="forbid")

    value: str | int | float | bool
    condition: dict[str, Any] = Field(description="a condition (docs/conditions.md)")


class ModelConfig(BaseModel):
    """Which model computes a model tag, and its parameters (checked by :mod:`tessera.tagmodels`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, description="e.g. rfm, lifecycle, clv, sentiment")
    params: dict[str, Any] = Field(default_factory=dict)


class TagDraft(BaseModel):
    """What a person writes to define a tag (标签定义)."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(description="stable key conditions use, e.g. rfm_group")
    name: str = Field(min_length=1, max_length=100, description="display name (zh)")
    name_en: str = Field(min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    owner: str | None = Field(default=None, max_length=200)
    category: str = Field(description="a category key")
    value_type: ValueType = "enum"
    enum_values: list[str] | None = Field(
        default=None, max_length=1000, description="the allowed values of an enum tag"
    )
    multi: bool = Field(default=False, description="multi-valued: a profile may hold several values")
    kind: TagKind = "static"
    schedule: str | None = Field(default=None, max_length=100, description="cron for computed kinds")
    status: TagStatus = "draft"
    rules: list[Rule] | None = Field(default=None, max_length=200, description="rule tags: ordered (value, condition)")
    sql: str | None = Field(default=None, max_length=100_000, description="sql tags: one SELECT (profile key, value)")
    model: ModelConfig | None = Field(default=None, description="model tags: the model and its parameters")
    min_coverage: float | None = Field(
        default=None, ge=0, le=1, description="flag the tag when fewer profiles than this share hold a value"
    )

    @field_validator("key", "category")
    @classmethod
    def _key(cls, v: str) -> str:
        if not KEY.match(v):
            raise ValueError("must be 1-63 lower-case letters, digits or _, starting with a letter")
        return v

    @model_validator(mode="after")
    def _shape(self) -> TagDraft:
        if self.value_type == "enum":
            if not self.enum_values:
                raise ValueError("an enum tag needs enum_values")
            if len(set(self.enum_values)) != len(self.enum_values) or any(not v.strip() for v in self.enum_values):
                raise ValueError("enum_values must be distinct and not blank")
        elif self.enum_values is not None:
            raise ValueError("enum_values only go with value_type enum")
        if self.kind == "static" and self.schedule:
            raise ValueError("a static tag is set, not computed: it has no schedule")
        if self.value_type == "bool" and self.multi:
            raise ValueError("a bool tag is single-valued")
        for kind, field in (("rule", "rules"), ("sql", "sql"), ("model", "model")):
            given = getattr(self, field) is not None
            if given and self.kind != kind:
                raise ValueError(f"{field} only goes with kind {kind}")
            if self.kind == kind and not given:
                raise ValueError(f"a {kind} tag needs {field}")
        if self.rules is not None:
            if not self.rules:
                raise ValueError("a rule tag needs at least one rule")
            for i, rule in enumerate(self.rules):
                try:
                    rule.value = _typed(self, rule.value)
                except ValueError as e:
                    raise ValueError(f"rules[{i}].value: {e}") from None
                try:
                    cond = parse_condition(rule.condition)
                except ConditionError as e:
                    path, message = e.errors[0]
                    raise ValueError(f"rules[{i}].condition{'.' + path if path else ''}: {message}") from None
                if any(isinstance(leaf, TagLeaf) and leaf.tag == self.key for _, leaf in leaves(cond)):
                    raise ValueError(f"rules[{i}].condition: a rule tag cannot read itself")
        if self.sql is not None and not self.sql.strip():
            raise ValueError("sql is empty")
        return self

    def rule_conditions(self) -> list[tuple[str, Any]]:
        """The rules as (stored value text, parsed condition), in order."""
        return [(check_value(self, r.value), parse_condition(r.condition)) for r in self.rules or ()]


def _typed(tag: TagDraft, value: object) -> str | int | float | bool:
    """A rule's value checked against the tag's type (kept as written)."""
    check_value(tag, value)
    return value  # type: ignore[return-value]


class Tag(TagDraft):
    version: int
    created_at: datetime
    updated_at: datetime


def check_value(tag: TagDraft, value: object) -> str:
    """A value of ``tag`` as stored text; raises ValueError saying why it does not fit."""
    if value is None:
        raise ValueError("a tag value cannot be null (remove the value instead)")
    t = tag.value_type
    if t == "bool":
        if not isinstance(value, bool):
            raise ValueError("a bool tag takes true or false")
        return "true" if value else "false"
    if t == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError("a number tag takes a finite number")
        return repr(float(value)) if isinstance(value, float) else str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a {t} tag takes non-blank text")
    if t == "enum" and value not in (tag.enum_values or ()):
        raise ValueError(f"{value!r} is not one of {', '.join(tag.enum_values or ())}")
    if t == "date":
        try:
            datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO date") from None
    return value
