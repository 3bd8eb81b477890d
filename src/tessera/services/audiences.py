"""Audiences (群组 / 人群包): who a campaign reaches, defined once and used everywhere.

Three kinds:

* **static** (静态群组): the members the definition selected when the audience was created (or its
  definition last changed), stored and never re-evaluated;
* **dynamic** (动态群组): re-evaluated whenever used; on its cron ``schedule`` (and on demand) the
  current members are stored, and who entered or left is recorded and emitted as
  ``Audience Entered`` / ``Audience Exited`` events (:mod:`tessera.services.audience_refresh`);
* **imported** (导入群组): an uploaded list of phones / emails / ids matched through OneID
  (:mod:`tessera.services.audience_import`).

Definitions live in the operational store; stored members in the analytic store
(``audience_members``, read through ``audience_members_current`` so merged members follow their
profile). Every SQL comes from :mod:`tessera.compiler`.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session
from sqlglot import exp

from tessera.compiler import AudienceRef, CompileContext, CompileError, compile_count, compile_members, resolve
from tessera.compiler.columnar import count_members
from tessera.compiler.projection import project
from tessera.compiler.query import Params, Query, run
from tessera.domain.conditions import (
    Condition,
    ConditionError,
    EvalContext,
    InAudienceLeaf,
    Leaf,
    leaves,
    parse_condition,
)
from tessera.errors import RequestError
from tessera.runtime import Instance
from tessera.stores.models import AudienceRow

Kind = Literal["static", "dynamic", "imported"]


class AudienceError(RequestError):
    """A request about audiences that cannot be carried out: ``status`` is the HTTP status to answer."""

    error = "invalid_audience"


class AudienceDraft(BaseModel):
    """What a person writes to create or change an audience."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, description="display name (zh or en), unique")
    name_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    kind: Literal["static", "dynamic"] = "dynamic"
    definition: dict[str, Any] = Field(description="a condition (docs/conditions.md)")
    schedule: str | None = Field(
        default=None, max_length=100, description="cron (workspace time zone) for refreshing a dynamic audience"
    )


class AudiencePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    name_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any] | None = None
    schedule: str | None = Field(default=None, max_length=100, description="empty text removes the schedule")
    status: Literal["active", "archived"] | None = None


class Audience(BaseModel):
    id: str
    name: str
    name_en: str | None
    description: str | None
    kind: Kind
    definition: dict[str, Any] | None
    schedule: str | None
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    refreshed_at: datetime | None
    next_refresh_at: datetime | None
    member_count: int | None = Field(description="members at the last snapshot or refresh")


def to_audience(row: AudienceRow) -> Audience:
    return Audience.model_validate(row, from_attributes=True)


class StoreResolver:
    """Tells the compiler about other audiences, from the operational store."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, audience_id: str) -> AudienceRef | None:
        row = self.session.get(AudienceRow, audience_id)
        if row is None:
            return None
        definition = parse_condition(row.definition) if row.kind == "dynamic" and row.definition else None
        return AudienceRef(id=row.id, kind=row.kind, definition=definition)  # type: ignore[arg-type]


def eval_context(inst: Instance) -> EvalContext:
    return EvalContext(now=inst.clock.now(), timezone=inst.settings.timezone)


def compile_context(inst: Instance, session: Session) -> CompileContext:
    return CompileContext(eval=eval_context(inst), audiences=StoreResolver(session))


def check_definition(data: Any, *, inst: Instance, session: Session, own_id: str | None = None) -> Condition:
    """Validate a definition and its references; errors name the JSON path under ``definition``."""
    try:
        cond = parse_condition(data)
        resolve(cond, compile_context(inst, session), own_id=own_id)
    except (ConditionError, CompileError) as e:
        errors = [(f"definition.{p}" if p else "definition", m) for p, m in e.errors]
        raise AudienceError(422, errors[0][0], errors[0][1], errors) from None
    return cond


def check_schedule(schedule: str | None) -> str | None:
    if not schedule:
        return None
    if not croniter.is_valid(schedule):
        raise AudienceError(422, "schedule", f"not a cron expression: {schedule!r} (e.g. '0 8 1 * *')")
    return schedule


def next_run(schedule: str | None, *, inst: Instance, after: datetime) -> datetime | None:
    """The next time a cron ``schedule`` fires after ``after``, in the workspace time zone."""
    if not schedule:
        return None
    local = after.astimezone(eval_context(inst).zone)
    nxt: datetime = croniter(schedule, local).get_next(datetime)
    return nxt


def audience_row(session: Session, audience_id: str) -> AudienceRow:
    row = session.get(AudienceRow, audience_id)
    if row is None:
        raise AudienceError(404, "audience", f"no audience {audience_id!r}")
    return row


def _check_name(session: Session, name: str, *, own_id: str | None = None) -> None:
    clash = session.scalars(select(AudienceRow).where(AudienceRow.name == name)).first()
    if clash is not None and clash.id != own_id:
        raise AudienceError(409, "name", f"an audience named {name!r} exists ({clash.id})")


def temp_table(name: str, select_: exp.Query) -> exp.Create:
    """``CREATE OR REPLACE TEMP TABLE name AS select_`` (lives on the cursor that runs it)."""
    return exp.Create(
        this=exp.to_table(name), kind="TABLE", expression=select_, replace=True,
        properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
    )  # fmt: skip


def new_id() -> str:
    return "aud_" + secrets.token_hex(6)


def create_audience(*, inst: Instance, draft: AudienceDraft) -> Audience:
    """Create a static or dynamic audience; a static one is snapshotted now."""
    now = inst.clock.now()
    with inst.operational.session() as s:
        _check_name(s, draft.name)
        cond = check_definition(draft.definition, inst=inst, session=s)
        if draft.kind == "static" and draft.schedule:
            raise AudienceError(422, "schedule", "a static audience is a snapshot; it has no schedule")
        schedule = check_schedule(draft.schedule)
        row = AudienceRow(
            id=new_id(), name=draft.name, name_en=draft.name_en, description=draft.description,
            kind=draft.kind, definition=parse_condition(draft.definition).model_dump(mode="json", exclude_none=True),
            schedule=schedule, status="active", version=1, created_at=now, updated_at=now,
            next_refresh_at=next_run(schedule, inst=inst, after=now),
        )  # fmt: skip
        s.add(row)
        s.flush()
        if draft.kind == "static":
            row.member_count = snapshot(inst=inst, session=s, audience_id=row.id, cond=cond)
            row.refreshed_at = now
        return to_audience(row)


def snapshot(*, inst: Instance, session: Session, audience_id: str, cond: Condition) -> int:
    """Replace the stored members by what ``cond`` selects now (a static audience's snapshot)."""
    params = Params()
    members = compile_members(cond, compile_context(inst, session), params=params)
    now = inst.clock.now().replace(tzinfo=None)
    aud = params.add(audience_id)
    at = params.add(now)
    insert = (
        exp.select(aud, exp.column("profile_idx", "p"), exp.column("profile_id", "p"), at)
        .from_(members.tree.subquery("m"))
        .join(exp.alias_(exp.to_table("profiles"), "p"), on="p.profile_idx = m.profile_idx")
    )
    with inst.analytic.transaction() as cur:
        run(cur, exp.delete("audience_members").where(exp.column("audience_id").eq(aud)), params.values)
        run(cur, exp.insert(insert, "audience_members"), params.values)
        count = cur.execute("SELECT count(*) FROM audience_members WHERE audience_id = ?", [audience_id]).fetchall()
    inst.analytic.changed("audience_members")
    return int(count[0][0])


def get_audience(*, inst: Instance, audience_id: str) -> Audience:
    with inst.operational.session() as s:
        return to_audience(audience_row(s, audience_id))


def list_audiences(*, inst: Instance, kind: str | None = None, status: str | None = None) -> list[Audience]:
    with inst.operational.session() as s:
        q = select(AudienceRow).order_by(AudienceRow.created_at, AudienceRow.name)
        if kind:
            q = q.where(AudienceRow.kind == kind)
        if status:
            q = q.where(AudienceRow.status == status)
        return [to_audience(r) for r in s.scalars(q)]


def audiences_where(session: Session, uses: Callable[[Leaf], bool], *, active_only: bool = False) -> list[AudienceRow]:
    """Audiences (by name) whose definition has a leaf for which ``uses`` holds."""
    q = select(AudienceRow).order_by(AudienceRow.name)
    if active_only:
        q = q.where(AudienceRow.status == "active")
    return [
        row for row in session.scalars(q)
        if row.definition and any(uses(leaf) for _, leaf in leaves(parse_condition(row.definition)))
    ]  # fmt: skip


def users_of(session: Session, audience_id: str) -> list[AudienceRow]:
    """Audiences whose definitions name ``audience_id`` (in_audience)."""
    return audiences_where(session, lambda leaf: isinstance(leaf, InAudienceLeaf) and leaf.audience == audience_id)


def update_audience(*, inst: Instance, audience_id: str, patch: AudiencePatch) -> Audience:
    """Change names, schedule, status or the definition (a new version; a static one is re-snapshotted)."""
    now = inst.clock.now()
    with inst.operational.session() as s:
        row = audience_row(s, audience_id)
        if patch.name is not None and patch.name != row.name:
            _check_name(s, patch.name, own_id=row.id)
            row.name = patch.name
        for name in ("name_en", "description"):
            if name in patch.model_fields_set:
                setattr(row, name, getattr(patch, name))
        if patch.status == "archived" and row.status != "archived":
            users = [u for u in users_of(s, row.id) if u.status == "active"]
            if users:
                names = ", ".join(f"{u.name} ({u.id})" for u in users)
                raise AudienceError(409, "status", f"active audiences use this one: {names}")
        if patch.status is not None:
            row.status = patch.status
        if "schedule" in patch.model_fields_set:
            if row.kind != "dynamic" and patch.schedule:
                raise AudienceError(422, "schedule", f"a {row.kind} audience has no schedule")
            row.schedule = check_schedule(patch.schedule)
            row.next_refresh_at = next_run(row.schedule, inst=inst, after=now)
        if patch.definition is not None:
            if row.kind == "imported":
                raise AudienceError(422, "definition", "an imported audience is its uploaded list; upload a new one")
            cond = check_definition(patch.definition, inst=inst, session=s, own_id=row.id)
            row.definition = cond.model_dump(mode="json", exclude_none=True)
            row.version += 1
            if row.kind == "static":
                row.member_count = snapshot(inst=inst, session=s, audience_id=row.id, cond=cond)
                row.refreshed_at = now
        row.updated_at = now
        return to_audience(row)


def delete_audience(*, inst: Instance, audience_id: str) -> None:
    """Delete an audience and its stored members; refused while another audience uses it."""
    with inst.operational.session() as s:
        row = audience_row(s, audience_id)
        users = users_of(s, row.id)
        if users:
            names = ", ".join(f"{u.name} ({u.id})" for u in users)
            raise AudienceError(409, "audience", f"other audiences use this one: {names}")
        s.delete(row)
        with inst.analytic.transaction() as cur:
            cur.execute("DELETE FROM audience_members WHERE audience_id = ?", [audience_id])
        inst.analytic.changed("audience_members")


# --- using an audience ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Members:
    """The members of an audience (or a draft definition) as a query selecting ``profile_idx``."""

    tree: exp.Query
    params: Params
    live: bool


@contextmanager
def members_of(*, inst: Instance, audience_id: str | None = None, definition: Any = None,
               params: Params | None = None) -> Iterator[Members]:  # fmt: skip
    """The member query of a stored audience (dynamic: evaluated now) or of a draft definition."""
    params = params or Params()
    with inst.operational.session() as s:
        if audience_id is not None:
            row = audience_row(s, audience_id)
            if row.kind == "dynamic":
                cond = parse_condition(row.definition)
            else:
                tree = (
                    exp.select("profile_idx")
                    .from_("audience_members_current")
                    .where(exp.column("audience_id").eq(params.add(row.id)))
                )
                yield Members(tree, params, live=False)
                return
        else:
            cond = check_definition(definition, inst=inst, session=s)
        query = compile_members(cond, compile_context(inst, s), params=params)
        yield Members(query.tree, params, live=True)


class Estimate(BaseModel):
    members: int
    profiles: int = Field(description="all profiles, for the share")
    engine: Literal["columns", "sql", "stored"]
    took_ms: float


def _profile_total(inst: Instance) -> int:
    return int(inst.analytic.cursor().execute("SELECT count(*) FROM profiles").fetchall()[0][0])


def estimate(*, inst: Instance, definition: Any = None, audience_id: str | None = None) -> Estimate:
    """Count members without saving anything: in-memory columns when the condition allows, else SQL."""
    started = time.perf_counter()
    with inst.operational.session() as s:
        if audience_id is not None:
            row = audience_row(s, audience_id)
            if row.kind != "dynamic":
                n = (
                    inst.analytic.cursor()
                    .execute("SELECT count(*) FROM audience_members_current WHERE audience_id = ?", [row.id])
                    .fetchall()[0][0]
                )
                return Estimate(members=int(n), profiles=_profile_total(inst), engine="stored",
                                took_ms=(time.perf_counter() - started) * 1000)  # fmt: skip
            definition = row.definition
        cond = check_definition(definition, inst=inst, session=s)
        ctx = compile_context(inst, s)
        resolved = resolve(cond, ctx)
        fast = count_members(resolved, ctx.eval, inst.analytic, inst.profile_columns)
        if fast is not None:
            engine: Literal["columns", "sql"] = "columns"
            n = fast
        else:
            engine = "sql"
            n = compile_count(cond, ctx).execute(inst.analytic.cursor())[0][0]
    took = (time.perf_counter() - started) * 1000
    return Estimate(members=int(n), profiles=_profile_total(inst), engine=engine, took_ms=round(took, 2))


class MemberRow(BaseModel):
    profile_idx: int
    profile_id: str
    name: str | None = None
    city: str | None = None
    member_level: str | None = None
    total_spend: float | None = None
    last_seen: datetime | None = None


class MembersPage(BaseModel):
    members: list[MemberRow]
    next_after: int | None = Field(description="pass as `after` for the next page; null at the end")
    live: bool


#: The columns a member list shows (names as :func:`tessera.compiler.projection.project` reads them).
MEMBER_COLUMNS = ("name", "city", "member_level", "total_spend", "last_seen")


def _member_rows(members: Members, *, limit: int, after: int | None, order: exp.Expr | None,
                 inst: Instance) -> list[MemberRow]:  # fmt: skip
    """``limit`` members (after ``after``, in ``order`` — default profile order) with :data:`MEMBER_COLUMNS`."""
    p = members.params
    picked = (
        exp.select(exp.column("profile_idx", "p"))
        .from_(members.tree.subquery("m"))
        .join(exp.alias_(exp.to_table("profiles"), "p"), on="p.profile_idx = m.profile_idx")
        .order_by(order if order is not None else exp.column("profile_idx", "p"))
        .limit(p.add(limit))
    )
    if after is not None:
        picked = picked.where(exp.GT(this=exp.column("profile_idx", "p"), expression=p.add(after)))
    query = project(picked, MEMBER_COLUMNS, p)
    tree = query.tree.select(exp.column("profile_idx", "m"), copy=False)
    rows = Query(tree, query.params).execute(inst.analytic.cursor())
    cols = ("profile_id", *MEMBER_COLUMNS, "profile_idx")
    return [MemberRow(**dict(zip(cols, r, strict=True))) for r in rows]


def members_page(*, inst: Instance, audience_id: str, limit: int = 100, after: int | None = None) -> MembersPage:
    """A page of members in profile order (keyset paging: pass the last ``profile_idx`` as ``after``)."""
    with members_of(inst=inst, audience_id=audience_id) as members:
        rows = _member_rows(members, limit=limit + 1, after=after, order=None, inst=inst)
    more = len(rows) > limit
    rows = rows[:limit]
    return MembersPage(members=rows, next_after=rows[-1].profile_idx if more and rows else None, live=members.live)


def sample(*, inst: Instance, audience_id: str | None = None, definition: Any = None, size: int = 20,
           seed: str = "") -> list[MemberRow]:  # fmt: skip
    """A random sample of members, the same for the same seed."""
    with members_of(inst=inst, audience_id=audience_id, definition=definition) as members:
        salt = members.params.add(seed)
        order = exp.func("md5", exp.func("concat", exp.column("profile_id", "p"), salt))
        return _member_rows(members, limit=size, after=None, order=order, inst=inst)
