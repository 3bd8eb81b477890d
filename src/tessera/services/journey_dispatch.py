"""Carrying out the outbox (发件箱): guards, rendering, channels, retries, dead letters.

Each round takes the pending rows that are due, in order, and for each message:

1. picks the channel — the node's kind, then its ``fallback`` kinds — the person can be reached on:
   an address, consent (:func:`tessera.domain.guards.consent_decision`, with their opt-outs);
   none → ``suppressed`` with the first reason (``no_address``, ``no_consent``, ``opted_out``);
2. unless the journey is transactional: the frequency cap of that kind in the person's time zone
   (→ ``suppressed``, ``frequency_cap_day`` / ``frequency_cap_week``), and quiet hours (→ stays
   ``pending`` with ``reason = quiet_hours`` until the window opens);
3. renders the template (sandboxed Jinja2, the person's locale) with profile, tags, coupon, the
   triggering event;
4. takes tokens from the global rate limiter (what does not fit waits for the next round);
5. marks the rows ``sending`` (committed), sends each channel's batch, and records the answers:
   ``sent`` (with the provider's id, for receipts), a retry later with backoff (408 / 429 / 5xx,
   ``Retry-After`` honoured), or ``failed`` / ``dead`` with a dead letter.

A crash while rows are ``sending`` leaves them so; :meth:`Dispatcher.recover` (at start) puts
them back to ``pending`` and they go again **with the same key** — the provider de-duplicates on
it (SMS ``message_id``, ``webhook-id``, email ``Message-ID``).

Tag and attribute effects go through the same outbox: tags through the static-tag writer (one
swap per tag and value per round), attributes as ``identify`` messages through the collection
pipeline (so the loader stays the only writer of events).
"""

from __future__ import annotations

import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from tessera.channels.base import Outbound, SendResult
from tessera.clock import as_utc
from tessera.domain.guards import (
    FrequencyCap,
    QuietHours,
    RateLimiter,
    cap_decision,
    cap_windows,
    choose_channel,
    consent_decision,
    quiet_until,
)
from tessera.domain.journeys import MESSAGE_KINDS, Journey
from tessera.runtime import Instance
from tessera.services.channels import ChannelPool, default_channels, opted_out, unsubscribe_url
from tessera.services.journey_facts import PersonFacts, load_people
from tessera.services.journeys import load_version
from tessera.stores.bulk import update_by_id
from tessera.stores.models import ChannelRow, DeliveryDeadLetterRow, JourneyOutboxRow, JourneyRow

log = logging.getLogger(__name__)

#: Outbox statuses a report shows, in order.
STATUSES = ("pending", "sending", "sent", "delivered", "undelivered", "failed", "suppressed", "dead")
COUNTED = ("sending", "sent", "delivered", "undelivered")


def parse_cap(text: str) -> FrequencyCap | None:
    """``"2/5"`` → 2 a day, 5 a week; ``"2"`` → 2 a day; ``""`` → no cap."""
    text = text.strip()
    if not text:
        return None
    day, _, week = text.partition("/")
    return FrequencyCap(per_day=int(day) if day.strip() else None, per_week=int(week) if week.strip() else None)


@dataclass
class _Ready:
    row: JourneyOutboxRow
    channel: ChannelRow
    message: Outbound
    kind: str


@dataclass
class RoundResult:
    taken: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    suppressed: int = 0
    held: int = 0
    effects: int = 0
    by_reason: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def profile_vars(f: PersonFacts) -> dict[str, Any]:
    """``profile`` in templates: the merged traits, the profile id, and the reachable addresses
    (phone in E.164, email, WeChat openid) — what the channels would use."""
    out: dict[str, Any] = {**f.traits, "id": f.profile_id}
    for name, kind in (("phone", "sms"), ("email", "email"), ("openid", "wechat")):
        if f.address(kind) is not None:
            out[name] = f.address(kind)
    return out


class Dispatcher:
    """Sends what the outbox holds. One per worker; ``write_traits`` writes identify messages."""

    def __init__(
        self,
        inst: Instance,
        *,
        pool: ChannelPool | None = None,
        write_traits: Callable[[Sequence[tuple[str, str, dict[str, Any]]]], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.inst = inst
        self.settings = inst.settings.journeys
        self.pool = pool or ChannelPool(inst)
        self.write_traits = write_traits
        self.limiter = RateLimiter(self.settings.rate_per_second or 0, now=monotonic)
        self._rng = rng or random.Random()
        self.quiet_default = QuietHours.parse(self.settings.quiet_hours) if self.settings.quiet_hours else None
        self.caps_default = {k: parse_cap(getattr(self.settings, f"cap_{k}")) for k in MESSAGE_KINDS}

    def close(self) -> None:
        self.pool.close()

    def recover(self) -> int:
        """Rows left ``sending`` by a crash go back to ``pending`` (sent again under the same key)."""
        with self.inst.operational.session() as s:
            got = s.execute(
                update(JourneyOutboxRow).where(JourneyOutboxRow.status == "sending").values(status="pending")
            )
            return int(got.rowcount or 0)  # type: ignore[attr-defined]

    # -- one round ---------------------------------------------------------------------------------

    def dispatch_once(self, *, now: datetime | None = None, limit: int | None = None) -> RoundResult:
        now = now or self.inst.clock.now()
        limit = limit or self.settings.dispatch_batch
        out = RoundResult()
        with self.inst.operational.session() as s:
            rows = list(
                s.scalars(
                    select(JourneyOutboxRow)
                    .where(JourneyOutboxRow.status == "pending", JourneyOutboxRow.next_attempt_at <= now)
                    .order_by(JourneyOutboxRow.next_attempt_at)
                    .limit(limit)
                )
            )
            out.taken = len(rows)
            if not rows:
                return out
            effects = [r for r in rows if r.kind in ("tag", "attribute")]
            messages = [r for r in rows if r.kind not in ("tag", "attribute")]
            ready = self._prepare(s, messages, now, out) if messages else []
            granted = self.limiter.take(len(ready)) if ready else 0
            ready = ready[:granted]
            for item in ready:
                r = item.row
                r.status, r.channel, r.address, r.sent_at = "sending", item.channel.name, item.message.to[:500], now
                r.sent_kind = item.kind
        if effects:
            self._effects(effects, now, out)
        if ready:
            self._send(ready, now, out)
        return out

    # -- deciding ----------------------------------------------------------------------------------

    def _prepare(self, s: Session, rows: list[JourneyOutboxRow], now: datetime, out: RoundResult) -> list[_Ready]:
        from tessera.services.templates import MessageTemplate, TemplateError, render, variables_for

        people = load_people(self.inst, (r.profile_idx for r in rows), tags=True)
        optouts = opted_out(s, (r.profile_id for r in rows))
        channels = {c.name: c for c in s.scalars(select(ChannelRow).where(ChannelRow.disabled.is_(False)))}
        by_kind = default_channels(channels.values())
        capped = any(self.caps_default.values()) or any(
            load_version(s, j, v).settings.caps for j, v in {(r.journey_id, r.version) for r in rows}
        )
        sent = self._recent(s, rows, now) if capped else defaultdict(list)
        names = {j.id: (j.name, j.name_en) for j in s.scalars(select(JourneyRow).where(
            JourneyRow.id.in_({r.journey_id for r in rows})))}  # fmt: skip
        ready: list[_Ready] = []
        for r in rows:
            journey = load_version(s, r.journey_id, r.version)
            node = journey.node(r.node_id)
            f = people.get(r.profile_idx) or PersonFacts(
                r.profile_idx, r.profile_id, timezone=self.inst.settings.timezone
            )
            ctx: dict[str, Any] = dict(r.context or {})
            if r.kind in ("notify", "webhook"):
                chan = channels.get(node.data.channel)
                if chan is None:
                    self._finish(
                        r, "failed", "no_channel", f"channel {node.data.channel!r} is missing or disabled", out
                    )
                    continue
                kind, address = chan.kind, (node.data.to if r.kind == "notify" else str(chan.config.get("url", "")))
            else:
                chosen, to, chan = self._choose(r, node, f, optouts, channels, by_kind, out)
                if chan is None or chosen is None or to is None:
                    continue
                kind, address = chosen, to
                if not journey.settings.transactional:
                    if self._capped(r, kind, f, journey, sent, now, out):
                        continue
                    quiet = (
                        QuietHours.parse(journey.settings.quiet_hours)
                        if journey.settings.quiet_hours
                        else self.quiet_default
                    )
                    until = quiet_until(now, f.timezone, quiet)
                    if until is not None:
                        r.next_attempt_at, r.reason = until, "quiet_hours"
                        out.held += 1
                        continue
            coupon = next(iter((ctx.get("coupons") or {}).values()), None)
            variables = variables_for(
                profile=profile_vars(f), tags=f.tags, coupon=coupon, event=ctx.get("event"),
                journey={"id": r.journey_id, "name": names.get(r.journey_id, ("", None))[0], "node": r.node_id},
                extra={"waited": ctx.get("waited") or {}, "timezone": f.timezone,
                       "unsubscribe_url": unsubscribe_url(self.inst, f.profile_id, kind)
                       if kind in MESSAGE_KINDS else None},
            )  # fmt: skip
            try:
                if r.kind == "webhook":
                    rendered = render(MessageTemplate(body={"zh": ""}, data=dict(node.data.payload)), locale=f.locale,
                                      variables=variables)  # fmt: skip
                    payload = {**rendered.data, "profile_id": f.profile_id, "journey_id": r.journey_id,
                               "node_id": r.node_id, "key": r.key}  # fmt: skip
                    msg = Outbound(r.key, address, "", None, {"payload": payload}, f.profile_id)
                else:
                    template = MessageTemplate.model_validate(node.data.template)
                    rendered = render(template, locale=f.locale, variables=variables, html=kind == "email")
                    data = dict(rendered.data)
                    if kind in MESSAGE_KINDS:
                        data.setdefault("unsubscribe_url", variables.get("unsubscribe_url"))
                    msg = Outbound(r.key, address, rendered.body, rendered.subject, data, f.profile_id)
            except (TemplateError, ValueError) as e:
                self._finish(r, "failed", "template", str(e), out)
                continue
            if kind in MESSAGE_KINDS:
                sent[(r.profile_id, kind)].append(now)
            ready.append(_Ready(r, chan, msg, kind))
        return ready

    def _choose(self, r: JourneyOutboxRow, node: Any, f: PersonFacts, optouts: set[tuple[str, str]],
                channels: Mapping[str, ChannelRow], by_kind: Mapping[str, ChannelRow],
                out: RoundResult) -> tuple[str | None, str | None, ChannelRow | None]:  # fmt: skip
        def channel_for(kind: str) -> ChannelRow | None:
            if kind == r.kind and node.data.channel:
                return channels.get(node.data.channel)
            return by_kind.get(kind)

        def reachable(kind: str) -> str | None:
            if channel_for(kind) is None:
                return "no_channel"
            if f.address(kind) is None:
                return "no_address"
            return consent_decision(f.traits, kind, opted_out=(f.profile_id, kind) in optouts,
                                    require_opt_in=self.settings.require_opt_in)  # fmt: skip

        kind, skipped = choose_channel([r.kind, *node.data.fallback], reachable)
        if kind is None:
            reason = skipped[0][1] if skipped else "no_channel"
            self._finish(r, "suppressed", reason, "; ".join(f"{k}: {why}" for k, why in skipped), out)
            return None, None, None
        if skipped:  # sent on a fallback kind (sent_kind ≠ kind); keep why the first choice was skipped
            r.error = "; ".join(f"{k}: {why}" for k, why in skipped)
        return kind, f.address(kind), channel_for(kind)

    def _recent(
        self, s: Session, rows: Sequence[JourneyOutboxRow], now: datetime
    ) -> dict[tuple[str, str], list[datetime]]:
        """Sends per (person, kind) in the last 8 days (enough for any local week)."""
        out: dict[tuple[str, str], list[datetime]] = defaultdict(list)
        ids = list({r.profile_id for r in rows})
        since = now - timedelta(days=8)
        for i in range(0, len(ids), 5000):
            got = s.execute(
                select(JourneyOutboxRow.profile_id, JourneyOutboxRow.channel, JourneyOutboxRow.sent_at, ChannelRow.kind)
                .join(ChannelRow, ChannelRow.name == JourneyOutboxRow.channel)
                .where(
                    JourneyOutboxRow.profile_id.in_(ids[i : i + 5000]),
                    JourneyOutboxRow.sent_at >= since,
                    JourneyOutboxRow.status.in_(COUNTED),
                    JourneyOutboxRow.kind.in_(MESSAGE_KINDS),
                )  # fmt: skip
            )
            for pid, _name, at, kind in got:
                if at is not None:
                    out[(pid, kind)].append(as_utc(at))
        return out

    def _capped(self, r: JourneyOutboxRow, kind: str, f: PersonFacts, journey: Journey,
                sent: Mapping[tuple[str, str], list[datetime]], now: datetime, out: RoundResult) -> bool:  # fmt: skip
        override = (journey.settings.caps or {}).get(kind)  # type: ignore[call-overload]
        cap = FrequencyCap(override.per_day, override.per_week) if override is not None else self.caps_default.get(kind)
        if cap is None:
            return False
        day, week = cap_windows(now, f.timezone)
        times = sent.get((r.profile_id, kind), [])
        why = cap_decision(cap, sum(t >= day for t in times), sum(t >= week for t in times))
        if why is None:
            return False
        self._finish(r, "suppressed", why, None, out)
        return True

    def _finish(
        self, r: JourneyOutboxRow, status: str, reason: str | None, error: str | None, out: RoundResult
    ) -> None:
        r.status, r.reason, r.error = status, reason, error
        if status == "suppressed":
            out.suppressed += 1
        else:
            out.failed += 1
        if reason:
            out.by_reason[reason] += 1

    # -- sending -----------------------------------------------------------------------------------

    def _send(self, ready: list[_Ready], now: datetime, out: RoundResult) -> None:
        groups: dict[str, list[_Ready]] = defaultdict(list)
        for item in ready:
            groups[item.channel.name].append(item)
        results: list[tuple[_Ready, SendResult]] = []
        for items in groups.values():
            channel = self.pool.get(items[0].channel)
            size = max(1, channel.max_batch)
            for i in range(0, len(items), size):
                part = items[i : i + size]
                try:
                    answers = channel.send([it.message for it in part])
                except Exception as e:  # a broken channel must not stop the others
                    log.exception("channel %s failed", channel.name)
                    answers = [SendResult(it.message.key, False, True, None, f"{type(e).__name__}: {e}") for it in part]
                results.extend(zip(part, answers, strict=True))
        self._record(results, now, out)

    def backoff(self, attempts: int, retry_after: float | None) -> float:
        s = self.settings
        ceiling = min(s.max_delay_seconds, s.base_delay_seconds * 2 ** min(attempts - 1, 30))
        wait = self._rng.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, s.max_delay_seconds)

    def _record(self, results: list[tuple[_Ready, SendResult]], now: datetime, out: RoundResult) -> None:
        updates: list[dict[str, Any]] = []
        dead: list[DeliveryDeadLetterRow] = []
        for item, res in results:
            r = item.row
            attempts = r.attempts + 1
            u: dict[str, Any] = {"b_id": r.id, "attempts": attempts, "provider_id": res.provider_id, "error": res.error,
                                 "status": "sent", "sent_at": now, "next_attempt_at": r.next_attempt_at,
                                 "reason": r.reason}  # fmt: skip
            if res.accepted:
                out.sent += 1
                # sent: the guard that held it (quiet hours) or the retries are history now; a
                # fallback keeps the reason the first kind was skipped in ``error``
                u.update(reason=None, error=r.error if item.kind != r.kind else None)
            elif res.retryable and attempts < self.settings.max_attempts:
                u.update(status="pending", sent_at=None, next_attempt_at=now + timedelta(seconds=self.backoff(attempts, res.retry_after)),
                         reason="retrying")  # fmt: skip
                out.retried += 1
            else:
                u.update(status="dead" if res.retryable else "failed", sent_at=None, reason="delivery")
                out.failed += 1
                dead.append(DeliveryDeadLetterRow(
                    channel=item.kind, reference=f"journey:{r.journey_id}:{r.node_id}:{r.key}",
                    destination=item.message.to[:2000],
                    payload={"key": r.key, "subject": item.message.subject, "body": item.message.body[:10000],
                             "to": item.message.to},
                    attempts=attempts, last_status=res.status, error=res.error or "failed", created_at=now,
                ))  # fmt: skip
            updates.append(u)
        with self.inst.operational.session() as s:
            update_by_id(s, JourneyOutboxRow, updates)
            s.add_all(dead)

    # -- tags and attributes -----------------------------------------------------------------------

    def _effects(self, rows: list[JourneyOutboxRow], now: datetime, out: RoundResult) -> None:
        from tessera.services.tag_static import set_values
        from tessera.services.templates import MessageTemplate, TemplateError, render, variables_for

        status: dict[int, tuple[str, str | None, str | None]] = {}
        tag_groups: dict[tuple[str, Literal["add", "remove"], Any], list[JourneyOutboxRow]] = defaultdict(list)
        traits: list[tuple[JourneyOutboxRow, dict[str, Any]]] = []
        with self.inst.operational.session() as s:
            versions = {(r.journey_id, r.version): load_version(s, r.journey_id, r.version) for r in rows}
        attr_rows = [r for r in rows if r.kind == "attribute"]
        people = load_people(self.inst, (r.profile_idx for r in attr_rows), tags=True) if attr_rows else {}
        for r in rows:
            node = versions[(r.journey_id, r.version)].node(r.node_id)
            if r.kind == "tag":
                tag_groups[(node.data.key, node.data.op, node.data.value)].append(r)
                continue
            f = people.get(r.profile_idx) or PersonFacts(r.profile_idx, r.profile_id)
            ctx: dict[str, Any] = dict(r.context or {})
            variables = variables_for(profile=profile_vars(f), tags=f.tags,
                                      coupon=next(iter((ctx.get("coupons") or {}).values()), None),
                                      event=ctx.get("event"), journey={"id": r.journey_id})  # fmt: skip
            try:
                got = render(MessageTemplate(body={"zh": ""}, data=dict(node.data.traits)), locale=f.locale,
                             variables=variables).data  # fmt: skip
            except (TemplateError, ValueError) as e:
                status[r.id] = ("failed", "template", str(e))
                continue
            traits.append((r, got))
        for (key, op, value), group in tag_groups.items():
            items = [{"profile_id": r.profile_id, **({"value": value} if value is not None else {})} for r in group]
            try:
                report = set_values(self.inst, key, items, op=op, trigger="journey", source="journey")
            except Exception as e:  # a tag archived since publishing, …
                for r in group:
                    status[r.id] = ("failed", "tag", getattr(e, "message", str(e)))
                continue
            bad = {p.index: p.reason for p in [*report.invalid, *report.unmatched] if p.index is not None}
            for i, r in enumerate(group):
                status[r.id] = ("failed", "tag", bad[i]) if i in bad else ("sent", None, None)
        if traits:
            if self.write_traits is None:
                for r, _ in traits:
                    status[r.id] = ("pending", "no_pipeline", "attribute changes need the server's pipeline")
            else:
                try:
                    self.write_traits([(r.key, r.profile_id, t) for r, t in traits])
                    for r, _ in traits:
                        status[r.id] = ("sent", None, None)
                except Exception as e:
                    for r, _ in traits:
                        status[r.id] = ("pending", "retrying", f"{type(e).__name__}: {e}")
        with self.inst.operational.session() as s:
            for r in rows:
                st, reason, error = status.get(r.id, ("failed", "unknown", None))
                values: dict[str, Any] = {"status": st, "reason": reason, "error": error, "attempts": r.attempts + 1}
                if st == "sent":
                    values["sent_at"] = now
                    out.effects += 1
                elif st == "pending":
                    values["next_attempt_at"] = now + timedelta(seconds=self.backoff(r.attempts + 1, None))
                else:
                    out.failed += 1
                s.execute(update(JourneyOutboxRow).where(JourneyOutboxRow.id == r.id).values(**values))
