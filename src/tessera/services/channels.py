"""Configured channels (渠道配置), opt-outs (退订) and delivery receipts (回执).

A channel is a name, a kind (email, sms, push, wechat, webhook, log) and its configuration
(checked by :func:`tessera.channels.registry.check_config`). Signing secrets (``whsec_…``) are
generated here, shown once at creation and never listed. Each channel has a receipt token: the
SMS provider posts delivery receipts to ``/v1/channels/{name}/receipts?token=…``.

Opt-outs are per person and channel kind; the dispatcher reads them for every send (consent is
checked in one place: :func:`tessera.domain.guards.consent_decision`).
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tessera.channels.base import CHANNEL_KINDS, Channel, ChannelConfigError, Receipt
from tessera.channels.webhook import new_secret
from tessera.clock import as_utc
from tessera.runtime import Instance
from tessera.services.journeys import JourneyRequestError
from tessera.stores.models import ChannelOptOutRow, ChannelRow, JourneyOutboxRow

_NAME_RE = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")
SIGNED_KINDS = ("webhook", "push", "wechat")
OPT_OUT_KINDS = ("email", "sms", "push", "wechat")


class ChannelDraft(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100)
    kind: str
    config: dict[str, Any] = Field(default_factory=dict)
    secret: str | None = Field(default=None, max_length=200, description="whsec_… (generated when omitted)")


class ChannelOut(BaseModel):
    name: str
    kind: str
    config: dict[str, Any]
    disabled: bool
    receipt_url: str | None = None
    created_at: datetime
    updated_at: datetime


class IssuedChannel(ChannelOut):
    secret: str | None = Field(description="shown once: the signing secret of a webhook, push or WeChat channel")
    receipt_token: str


_HIDDEN = ("password", "api_key", "token")


def _public(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config as listed: passwords, keys and our own receipt token masked."""
    out = {k: ("***" if k in _HIDDEN and v else v) for k, v in config.items()}
    if isinstance(out.get("callback_url"), str):
        out["callback_url"] = re.sub(r"([?&]token=)[^&]+", r"\1***", out["callback_url"])
    return out


def receipt_url(inst: Instance, name: str, token: str) -> str:
    """Where the SMS provider posts delivery receipts for channel ``name``."""
    return f"{inst.settings.journeys.public_url.rstrip('/')}/v1/channels/{name}/receipts?token={token}"


def _out(inst: Instance, row: ChannelRow, *, reveal: bool = False) -> ChannelOut:
    """A channel as listed: the receipt token is shown only when the channel is created."""
    token = row.receipt_token if reveal else "***"
    return ChannelOut(
        name=row.name, kind=row.kind, config=_public(row.config), disabled=row.disabled,
        receipt_url=receipt_url(inst, row.name, token) if row.kind == "sms" else None,
        created_at=as_utc(row.created_at), updated_at=as_utc(row.updated_at),
    )  # fmt: skip


def _check(draft: ChannelDraft) -> dict[str, Any]:
    from tessera.channels.registry import check_config

    if not _NAME_RE.match(draft.name):
        raise JourneyRequestError(422, "name", "a channel name is 1-100 letters, digits, _ or -")
    if draft.kind not in CHANNEL_KINDS:
        raise JourneyRequestError(422, "kind", f"one of {', '.join(CHANNEL_KINDS)}")
    try:
        return check_config(draft.kind, draft.config)
    except ChannelConfigError as e:
        raise JourneyRequestError(422, e.field, e.message) from None


def create_channel(*, inst: Instance, draft: ChannelDraft) -> IssuedChannel:
    config = _check(draft)
    secret = draft.secret
    if draft.kind in SIGNED_KINDS:
        if secret is None:
            secret = new_secret()
        else:
            from tessera.channels.webhook import sign

            try:
                sign(secret, "check", 0, b"")
            except ValueError as e:
                raise JourneyRequestError(422, "secret", str(e)) from None
    elif secret is not None:
        raise JourneyRequestError(422, "secret", f"a {draft.kind} channel is not signed; leave secret out")
    now = inst.clock.now()
    token = secrets.token_urlsafe(24)
    if draft.kind == "sms" and "sandbox" not in config and not config.get("callback_url"):
        config["callback_url"] = receipt_url(inst, draft.name, token)  # receipts come back to us by default
    with inst.operational.session() as s:
        if s.get(ChannelRow, draft.name) is not None:
            raise JourneyRequestError(409, "name", f"a channel named {draft.name!r} exists")
        row = ChannelRow(name=draft.name, kind=draft.kind, config=config, secret=secret,
                         receipt_token=token, disabled=False, created_at=now, updated_at=now)  # fmt: skip
        s.add(row)
        s.flush()
        out = _out(inst, row, reveal=True)
        return IssuedChannel(**out.model_dump(), secret=secret, receipt_token=row.receipt_token)


def update_channel(*, inst: Instance, name: str, config: dict[str, Any] | None = None,
                   disabled: bool | None = None) -> ChannelOut:  # fmt: skip
    with inst.operational.session() as s:
        row = channel_row(s, name)
        if config is not None:
            row.config = _check(ChannelDraft(name=row.name, kind=row.kind, config={**row.config, **config}))
        if disabled is not None:
            row.disabled = disabled
        row.updated_at = inst.clock.now()
        return _out(inst, row)


def channel_row(session: Session, name: str) -> ChannelRow:
    row = session.get(ChannelRow, name)
    if row is None:
        raise JourneyRequestError(404, "channel", f"no channel {name!r}")
    return row


def list_channels(*, inst: Instance) -> list[ChannelOut]:
    with inst.operational.session() as s:
        return [_out(inst, r) for r in s.scalars(select(ChannelRow).order_by(ChannelRow.name))]


def delete_channel(*, inst: Instance, name: str) -> None:
    """Delete a channel no live journey names."""
    from tessera.services.journeys import live_journeys

    with inst.operational.session() as s:
        row = channel_row(s, name)
        chosen = default_channels(s.scalars(select(ChannelRow).where(ChannelRow.kind == row.kind))).get(row.kind)
        default = chosen is not None and chosen.name == name  # the channel of its kind that unnamed nodes use

        def uses(n: Any) -> bool:
            named = getattr(getattr(n, "data", None), "channel", None)
            if named == name:
                return True
            return default and named is None and (n.type == row.kind or row.kind in getattr(n.data, "fallback", ()))

        users = [
            f"{jrow.name} ({jrow.id})"
            for jrow, journey in live_journeys(s)
            if any(uses(n) for n in journey.graph.nodes)
        ]
        if users:
            raise JourneyRequestError(409, "channel", "live journeys use this channel: " + ", ".join(users))
        s.delete(row)


def is_sandbox(row: ChannelRow) -> bool:
    return "sandbox" in (row.config or {})


def default_channels(rows: Iterable[ChannelRow]) -> dict[str, ChannelRow]:
    """The channel of each kind that message nodes without a named channel use: a real one before a
    sandbox, then by name."""
    out: dict[str, ChannelRow] = {}
    for row in sorted((r for r in rows if not r.disabled), key=lambda r: (is_sandbox(r), r.name)):
        out.setdefault(row.kind, row)
    return out


class ChannelPool:
    """Built channels by name, rebuilt when their configuration changes. Thread-safe."""

    def __init__(self, inst: Instance) -> None:
        self.inst = inst
        self._built: dict[str, tuple[datetime, Channel]] = {}
        self._lock = threading.Lock()

    def rows(self) -> dict[str, ChannelRow]:
        with self.inst.operational.session() as s:
            return {r.name: r for r in s.scalars(select(ChannelRow).where(ChannelRow.disabled.is_(False)))}

    def get(self, row: ChannelRow) -> Channel:
        from tessera.channels.registry import build_channel

        with self._lock:
            hit = self._built.get(row.name)
            if hit is not None and hit[0] == row.updated_at:
                return hit[1]
            if hit is not None:
                hit[1].close()
            ch = build_channel(row.kind, row.name, row.config, clock=self.inst.clock, secret=row.secret)
            self._built[row.name] = (row.updated_at, ch)
            return ch

    def close(self) -> None:
        with self._lock:
            for _, ch in self._built.values():
                ch.close()
            self._built.clear()


# --- opt-outs ------------------------------------------------------------------------------------


def opt_out(*, inst: Instance, profile_id: str, channel: str, source: str = "api") -> bool:
    """Record that a person opted out of a channel kind; True if it is new."""
    if channel not in OPT_OUT_KINDS:
        raise JourneyRequestError(422, "channel", f"one of {', '.join(OPT_OUT_KINDS)}")
    with inst.operational.session() as s:
        exists = s.scalar(select(ChannelOptOutRow).where(ChannelOptOutRow.profile_id == profile_id,
                                                          ChannelOptOutRow.channel == channel))  # fmt: skip
        if exists is not None:
            return False
        s.add(ChannelOptOutRow(profile_id=profile_id, channel=channel, source=source[:50], created_at=inst.clock.now()))
        return True


def opt_in(*, inst: Instance, profile_id: str, channel: str) -> bool:
    """Remove an opt-out (the person subscribed again); True if there was one."""
    with inst.operational.session() as s:
        row = s.scalar(select(ChannelOptOutRow).where(ChannelOptOutRow.profile_id == profile_id,
                                                       ChannelOptOutRow.channel == channel))  # fmt: skip
        if row is None:
            return False
        s.delete(row)
        return True


def opted_out(session: Session, profile_ids: Iterable[str]) -> set[tuple[str, str]]:
    ids = list(set(profile_ids))
    out: set[tuple[str, str]] = set()
    for i in range(0, len(ids), 5000):
        rows = session.execute(
            select(ChannelOptOutRow.profile_id, ChannelOptOutRow.channel).where(
                ChannelOptOutRow.profile_id.in_(ids[i : i + 5000])
            )
        )
        out |= {(p, c) for p, c in rows}
    return out


def unsubscribe_token(inst: Instance, profile_id: str, channel: str) -> str:
    """An HMAC over (profile, channel) so an unsubscribe link cannot be forged for someone else."""
    import hashlib
    import hmac

    key = _unsubscribe_key(inst)
    return hmac.new(key, f"{profile_id}\x1f{channel}".encode(), hashlib.sha256).hexdigest()[:32]


_KEYS: dict[str, bytes] = {}
_KEYS_LOCK = threading.Lock()


def _unsubscribe_key(inst: Instance) -> bytes:
    """The data dir's secret for unsubscribe links (created on first use, then kept in memory)."""
    path = inst.data_dir.root / "unsubscribe.key"
    with _KEYS_LOCK:
        key = _KEYS.get(str(path))
        if key is None:
            if not path.exists():
                path.write_bytes(secrets.token_bytes(32))
                path.chmod(0o600)
            key = _KEYS[str(path)] = path.read_bytes()
        return key


def unsubscribe_url(inst: Instance, profile_id: str, channel: str) -> str:
    base = inst.settings.journeys.public_url.rstrip("/")
    return f"{base}/v1/unsubscribe?p={profile_id}&c={channel}&t={unsubscribe_token(inst, profile_id, channel)}"


def unsubscribe(*, inst: Instance, profile_id: str, channel: str, token: str) -> bool:
    import hmac

    if not hmac.compare_digest(token, unsubscribe_token(inst, profile_id, channel)):
        raise JourneyRequestError(403, "t", "this unsubscribe link is not valid")
    return opt_out(inst=inst, profile_id=profile_id, channel=channel, source="unsubscribe_link")


# --- delivery receipts ------------------------------------------------------------------------------

_RECEIPT_STATUS = {"delivered": "delivered", "undelivered": "undelivered", "failed": "undelivered"}


def apply_receipts(*, inst: Instance, channel: str, token: str, body: Any) -> dict[str, int]:
    """Record delivery receipts posted by a provider (``delivered`` / ``undelivered`` / ``failed``;
    ``queued`` and ``sent`` are acknowledged and change nothing). Unknown message ids are counted."""
    from tessera.channels.sms import parse_receipts

    with inst.operational.session() as s:
        row = channel_row(s, channel)
        import hmac

        if not hmac.compare_digest(token, row.receipt_token):
            raise JourneyRequestError(401, "token", "wrong receipt token for this channel")
    try:
        receipts: list[Receipt] = parse_receipts(body)
    except ValueError as e:
        where = str(e).split(":")[0]
        field = "body" + (where if where.startswith("[") else f".{where}" if where and " " not in where else "")
        raise JourneyRequestError(422, field, str(e)) from None
    now = inst.clock.now()
    counts = {"applied": 0, "unknown": 0, "ignored": 0}
    with inst.operational.session() as s:
        for r in receipts:
            status = _RECEIPT_STATUS.get(r.status)
            if status is None:
                counts["ignored"] += 1
                continue
            values: dict[str, Any] = {"status": status, "error": r.error}
            if status == "delivered":
                values["delivered_at"] = now
            got = s.execute(
                update(JourneyOutboxRow)
                .where(JourneyOutboxRow.key == r.key, JourneyOutboxRow.status.in_(("sent", "delivered", "undelivered")))
                .values(**values)
            )
            counts["applied" if got.rowcount else "unknown"] += 1  # type: ignore[attr-defined]
    return counts
