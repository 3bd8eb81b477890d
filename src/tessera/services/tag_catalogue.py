"""The tag catalogue in the operational store: categories (a tree) and tag definitions.

The seeds' default categories are created on first use. A definition change is a new version; a
tag cannot be archived while an active audience's definition names it (the message names them),
and a category cannot be removed while tags or sub-categories are in it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from croniter import croniter
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from tessera.clock import as_utc
from tessera.domain.conditions import TagLeaf, leaves, parse_condition
from tessera.domain.tags import DEFAULT_CATEGORIES, Category, CategoryDraft, Tag, TagDraft
from tessera.services.audiences import audiences_where
from tessera.stores.models import TagCategoryRow, TagDefinitionRow
from tessera.tagmodels import shape_body


class CatalogueError(ValueError):
    """A refused catalogue request; ``status`` is the HTTP status to answer, ``field`` what is wrong."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message


def _validated(model: type[CategoryDraft] | type[TagDraft], body: Any) -> Any:
    if model is TagDraft and isinstance(body, dict):
        try:
            body = shape_body(body)
        except ValueError as e:
            field, _, message = str(e).partition(": ")
            raise CatalogueError(422, field, message) from None
    try:
        return model.model_validate(body)
    except ValidationError as e:
        err = e.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        message = str(err["msg"]).removeprefix("Value error, ")
        # a model-level check names its own field first ("rules[1].condition.op: …")
        head, sep, rest = message.partition(": ")
        if field == "body" and sep and " " not in head:
            field, message = head, rest
        raise CatalogueError(422, field, message) from None


def _check_definition(session: Session, draft: TagDraft) -> None:
    """What the draft alone cannot know: its schedule, rule dependencies, the SQL's safety."""
    if draft.schedule and not croniter.is_valid(draft.schedule):
        raise CatalogueError(422, "schedule", f"not a cron expression: {draft.schedule!r} (e.g. '0 3 * * *')")
    if draft.kind == "rule":
        reads = _rule_reads(draft)
        graph = {r.key: _rule_reads(TagDraft.model_validate(r.body)) for r in
                 session.scalars(select(TagDefinitionRow).where(TagDefinitionRow.kind == "rule"))}  # fmt: skip
        graph[draft.key] = reads
        cycle = _cycle(graph, draft.key)
        if cycle:
            raise CatalogueError(422, "rules", f"rule tags read each other in a cycle: {' → '.join(cycle)}")
    if draft.kind == "sql" and draft.sql is not None:
        from tessera.services.sql_tags import check_sql

        try:
            check_sql(draft.sql)
        except ValueError as e:
            raise CatalogueError(422, "sql", str(e)) from None


def _rule_reads(draft: TagDraft) -> set[str]:
    return {leaf.tag for _, cond in draft.rule_conditions() for _, leaf in leaves(cond) if isinstance(leaf, TagLeaf)}


def _cycle(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start → … → start through ``graph``, if there is one."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in sorted(graph.get(node, ())):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def ensure_default_categories(*, session: Session, now: datetime) -> None:
    """Create the seeds' categories that do not exist yet."""
    have = set(session.scalars(select(TagCategoryRow.key)))
    for c in DEFAULT_CATEGORIES:
        if c.key not in have:
            session.add(TagCategoryRow(**c.model_dump(), created_at=now))
    session.flush()


def list_categories(*, session: Session, now: datetime) -> list[Category]:
    ensure_default_categories(session=session, now=now)
    rows = session.scalars(select(TagCategoryRow).order_by(TagCategoryRow.position, TagCategoryRow.key))
    return [Category.model_validate(r, from_attributes=True) for r in rows]


def create_category(*, session: Session, body: Any, now: datetime) -> Category:
    draft: CategoryDraft = _validated(CategoryDraft, body)
    ensure_default_categories(session=session, now=now)
    if session.get(TagCategoryRow, draft.key) is not None:
        raise CatalogueError(409, "key", f"a category {draft.key!r} exists")
    if draft.parent is not None and session.get(TagCategoryRow, draft.parent) is None:
        raise CatalogueError(422, "parent", f"no category {draft.parent!r}")
    row = TagCategoryRow(**draft.model_dump(), created_at=now)
    session.add(row)
    session.flush()
    return Category.model_validate(row, from_attributes=True)


def delete_category(*, session: Session, key: str) -> None:
    row = session.get(TagCategoryRow, key)
    if row is None:
        raise CatalogueError(404, "category", f"no category {key!r}")
    children = session.scalars(select(TagCategoryRow.key).where(TagCategoryRow.parent == key)).all()
    tags = session.scalars(select(TagDefinitionRow.key).where(TagDefinitionRow.category == key)).all()
    if children or tags:
        inside = ", ".join([*children, *tags])
        raise CatalogueError(409, "category", f"{key!r} is not empty: {inside}")
    session.delete(row)


def tag_from_row(row: TagDefinitionRow) -> Tag:
    return Tag.model_validate({**row.body, "version": row.version, "created_at": as_utc(row.created_at),
                               "updated_at": as_utc(row.updated_at)})  # fmt: skip


def check_draft(*, session: Session, body: Any) -> TagDraft:
    """A definition checked as :func:`create_tag` would (without saving it or needing its category)."""
    draft: TagDraft = _validated(TagDraft, body)
    _check_definition(session, draft)
    return draft


def create_tag(*, session: Session, body: Any, now: datetime) -> Tag:
    """Define a tag; its category must exist."""
    draft: TagDraft = _validated(TagDraft, body)
    ensure_default_categories(session=session, now=now)
    if session.get(TagDefinitionRow, draft.key) is not None:
        raise CatalogueError(409, "key", f"a tag {draft.key!r} exists")
    if session.get(TagCategoryRow, draft.category) is None:
        raise CatalogueError(422, "category", f"no category {draft.category!r}")
    _check_definition(session, draft)
    row = TagDefinitionRow(key=draft.key, body=draft.model_dump(mode="json"), category=draft.category, kind=draft.kind,
                           status=draft.status, version=1, created_at=now, updated_at=now)  # fmt: skip
    session.add(row)
    session.flush()
    return tag_from_row(row)


def get_tag(*, session: Session, key: str) -> Tag:
    row = session.get(TagDefinitionRow, key)
    if row is None:
        raise CatalogueError(404, "tag", f"no tag {key!r}")
    return tag_from_row(row)


def list_tags(*, session: Session, category: str | None = None, status: str | None = None) -> list[Tag]:
    q = select(TagDefinitionRow).order_by(TagDefinitionRow.category, TagDefinitionRow.key)
    if category is not None:
        q = q.where(TagDefinitionRow.category == category)
    if status is not None:
        q = q.where(TagDefinitionRow.status == status)
    return [tag_from_row(r) for r in session.scalars(q)]


_USER_KIND = {"audience": "audience", "tag": "rule tag", "journey": "journey"}


def tag_usage(*, session: Session, key: str) -> list[dict[str, str]]:
    """Where a tag is read: audiences (active or not), rule tags whose conditions name it, and live
    journeys that set it or split on it (a paused journey counts as active: it resumes)."""
    return tags_usage(session=session, keys=[key])[key]


def tags_usage(*, session: Session, keys: list[str]) -> dict[str, list[dict[str, str]]]:
    """:func:`tag_usage` of several tags, reading each audience and rule tag definition once."""
    out: dict[str, list[dict[str, str]]] = {k: [] for k in keys}
    for a in audiences_where(session, lambda leaf: isinstance(leaf, TagLeaf) and leaf.tag in out):
        assert a.definition is not None
        for k in {leaf.tag for _, leaf in leaves(parse_condition(a.definition)) if isinstance(leaf, TagLeaf)} & set(
            out
        ):
            out[k].append({"kind": "audience", "id": a.id, "name": a.name, "status": a.status})
    for row in session.scalars(select(TagDefinitionRow).where(TagDefinitionRow.kind == "rule")):
        for k in _rule_reads(TagDraft.model_validate(row.body)) - {row.key}:
            if k in out:
                out[k].append({"kind": "tag", "id": row.key, "name": str(row.body["name"]), "status": row.status})
    from tessera.services.journeys import live_journeys, tags_used

    for jrow, journey in live_journeys(session):
        for k in tags_used(journey) & set(out):
            out[k].append({"kind": "journey", "id": jrow.id, "name": jrow.name, "status": "active"})
    return out


def update_tag(*, session: Session, key: str, changes: dict[str, Any], now: datetime) -> Tag:
    """Change a tag's definition (a new version). The key cannot change; archiving is refused while
    an active audience uses the tag."""
    row = session.get(TagDefinitionRow, key)
    if row is None:
        raise CatalogueError(404, "tag", f"no tag {key!r}")
    if "key" in changes and changes["key"] != key:
        raise CatalogueError(422, "key", "a tag's key never changes (conditions name it); define a new tag")
    base = dict(row.body)
    if row.kind == "model":  # the model decides these again
        for field in ("value_type", "enum_values", "multi"):
            base.pop(field, None)
    draft: TagDraft = _validated(TagDraft, {**base, **changes})
    if draft.status == "archived" and row.status != "archived":
        users = [u for u in tag_usage(session=session, key=key) if u["status"] == "active"]
        if users:
            names = ", ".join(f"{_USER_KIND[u['kind']]} {u['name']} ({u['id']})" for u in users)
            raise CatalogueError(409, "status", f"tag {key!r} is in use by active {names}")
    if session.get(TagCategoryRow, draft.category) is None:
        raise CatalogueError(422, "category", f"no category {draft.category!r}")
    if draft.kind != row.kind:
        raise CatalogueError(422, "kind", "a tag's kind never changes (its values came from it); define a new tag")
    _check_definition(session, draft)
    row.body = draft.model_dump(mode="json")
    row.category, row.kind, row.status = draft.category, draft.kind, draft.status
    row.version += 1
    row.updated_at = now
    session.flush()
    return tag_from_row(row)
