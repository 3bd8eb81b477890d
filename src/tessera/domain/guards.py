"""Guards on every send (发送保护): consent, frequency caps, quiet hours, rate limits, channel fallback.

Everything here is pure: no database, no network, no clock. Instants come in as timezone-aware
datetimes (UTC by convention) and leave as UTC datetimes; a person's local time is computed with
:mod:`zoneinfo`, so daylight-saving gaps and folds follow the IANA database. The journey dispatcher
asks each guard in turn and records the reason code of the first that refuses.

Reason codes: ``"opted_out"`` (退订), ``"no_consent"``, ``"frequency_cap_day"``,
``"frequency_cap_week"`` (频次控制); the fallback walk (:func:`choose_channel`) also carries
whatever codes its ``reachable`` callback returns (``"no_address"`` …).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

#: The channels a journey can send on. ``webhook`` is server-to-server (e.g. a dealer
#: notification), not a message to the person, so marketing consent never refuses it.
CHANNELS = ("email", "sms", "push", "wechat", "webhook")

_TRUE = frozenset({"true", "t", "1", "yes", "y", "on", "是", "同意"})
_FALSE = frozenset({"false", "f", "0", "no", "n", "off", "否", "不同意"})


# --------------------------------------------------------------------------------------- consent


def _as_bool(value: Any) -> bool | None:
    """A consent flag as a bool: real bools, 0/1, and the usual strings (``"false"``, ``"否"`` …).

    Anything else (None, ``"maybe"``, 2, a list) is *unknown* and returns None, so it is ignored.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return {0: False, 1: True}.get(value)
    if isinstance(value, str):
        text = value.strip().casefold()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return None


def consent_decision(
    traits: Mapping[str, Any],
    channel: str,
    *,
    opted_out: bool = False,
    require_opt_in: bool = False,
) -> str | None:
    """Whether the profile lets us send on ``channel``: None when allowed, else a reason code.

    ``"opted_out"`` (退订): the person unsubscribed from this channel (an unsubscribe link, a
    “回复TD退订” reply); that is recorded outside the profile and passed in as ``opted_out``, and
    it refuses every channel it is given for, webhook included.

    ``"no_consent"``: the profile traits say no. The shapes read, all optional:

    - ``consent: {"<channel>": bool, "marketing": bool}`` — a nested dict; ``"<channel>"`` is
      the per-channel answer, ``marketing: false`` refuses every channel except ``webhook``;
    - ``"<channel>_consent": bool`` and ``"<channel>_opt_in": bool`` — flat per-channel answers
      (e.g. ``sms_consent``, ``wechat_opt_in``);
    - ``unsubscribed: true`` — the classic email unsubscribe flag; refuses ``email`` only;
    - ``marketing_opt_out: true`` — refuses every channel except ``webhook``.

    Values may be real booleans, 0/1, or strings: ``"true"/"1"/"yes"/"是"`` and
    ``"false"/"0"/"no"/"否"`` (case and surrounding spaces ignored); any other value is unknown
    and ignored, as if the key were missing. A refusal anywhere wins over a grant anywhere
    (``consent.sms: true`` does not undo ``marketing_opt_out: true``).

    Missing consent means allowed, unless the workspace sets ``require_opt_in=True`` (明示同意):
    then a channel needs an explicit true — a per-channel true or ``consent.marketing: true`` —
    else ``"no_consent"``. Webhooks are exempt from the marketing refusals and from
    ``require_opt_in``; only an explicit per-channel ``webhook`` false (or ``opted_out``) stops one.

    Raises ValueError for a channel not in :data:`CHANNELS`.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; expected one of {', '.join(CHANNELS)}")
    if opted_out:
        return "opted_out"

    nested = traits.get("consent")
    nested = nested if isinstance(nested, Mapping) else {}
    per_channel = [
        _as_bool(nested.get(channel)),
        _as_bool(traits.get(f"{channel}_consent")),
        _as_bool(traits.get(f"{channel}_opt_in")),
    ]
    marketing = _as_bool(nested.get("marketing"))
    marketing_opt_out = _as_bool(traits.get("marketing_opt_out"))
    unsubscribed = _as_bool(traits.get("unsubscribed"))

    if False in per_channel:
        return "no_consent"
    if channel == "webhook":
        return None
    if marketing is False or marketing_opt_out is True:
        return "no_consent"
    if channel == "email" and unsubscribed is True:
        return "no_consent"
    if require_opt_in and True not in per_channel and marketing is not True:
        return "no_consent"
    return None


# ---------------------------------------------------------------------------------- time helpers


def _zone(tz: str) -> ZoneInfo:
    """The IANA zone ``tz``; ValueError naming it when it does not exist."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime (UTC)")


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    """The naive local wall time of ``instant`` in ``zone``."""
    return instant.astimezone(zone).replace(tzinfo=None)


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    """The UTC offset of ``zone`` at ``instant``."""
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _first_change(after: datetime, until: datetime, zone: ZoneInfo) -> datetime | None:
    """The first transition (UTC offset change) of ``zone`` in (``after``, ``until``], or None.

    Assumes at most one transition in the span (true of real zones over a day or so); tz
    transitions fall on whole seconds, so a binary search over whole seconds finds it.
    """
    before = _offset(after, zone)
    if _offset(until, zone) == before:
        return None
    lo, hi = math.floor(after.timestamp()), math.ceil(until.timestamp())
    if _offset(datetime.fromtimestamp(hi, UTC), zone) == before:  # pragma: no cover - two transitions
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(datetime.fromtimestamp(mid, UTC), zone) == before:
            lo = mid
        else:
            hi = mid
    return datetime.fromtimestamp(hi, UTC)


def _instants(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants whose local wall time in ``zone`` is ``wall``, earliest first.

    One instant normally, two in a fold (the repeated hour when clocks go back). In a gap (the
    skipped hour when clocks go forward) no instant has that wall time, so the one returned is the
    first valid instant after it: the transition itself (e.g. 03:00 EDT for 02:30 in New York).
    """
    found: list[datetime] = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if _wall(instant, zone) == wall and instant not in found:
            found.append(instant)
    if found:
        return sorted(found)
    # A gap: fold=0 and fold=1 map to instants either side of the transition. Local wall time only
    # moves forward across a gap, so binary-search the first whole second whose wall time is
    # >= ``wall`` (tz transitions fall on whole seconds).
    a = wall.replace(tzinfo=zone, fold=0).timestamp()
    b = wall.replace(tzinfo=zone, fold=1).timestamp()
    lo, hi = math.floor(min(a, b)), math.ceil(max(a, b))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), zone) >= wall:
            hi = mid
        else:
            lo = mid
    return [datetime.fromtimestamp(hi, UTC)]


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    """The UTC instant local ``day`` begins: local midnight, or the first instant after a skipped one."""
    return _instants(datetime.combine(day, time(0)), zone)[0]


@cache
def _known_zones() -> frozenset[str]:
    # ``localtime`` / ``posixrules`` are files some systems keep in the zone directory, not IANA names.
    return frozenset(available_timezones()) - {"localtime", "posixrules"}


def person_timezone(traits: Mapping[str, Any], default: str) -> str:
    """The person's time zone (时区): trait ``timezone``, else ``time_zone``, else ``tz``, else ``default``.

    A trait counts only if it names a valid IANA zone (``"Asia/Shanghai"``, surrounding spaces
    ignored); otherwise the next key is tried. Raises ValueError when ``default`` is not valid.
    """
    if default not in _known_zones():
        raise ValueError(f"unknown default time zone {default!r}")
    for key in ("timezone", "time_zone", "tz"):
        value = traits.get(key)
        if isinstance(value, str) and value.strip() in _known_zones():
            return value.strip()
    return default


# --------------------------------------------------------------------------------- frequency cap


@dataclass(frozen=True)
class FrequencyCap:
    """Frequency cap (频次控制): at most ``per_day`` sends per local calendar day and ``per_week``
    per local ISO week (Monday to Sunday); None means no cap, 0 means never.
    """

    per_day: int | None = None
    per_week: int | None = None

    def __post_init__(self) -> None:
        for name in ("per_day", "per_week"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"FrequencyCap.{name} must be a non-negative int or None, got {value!r}")


def cap_windows(now: datetime, tz: str) -> tuple[datetime, datetime]:
    """The UTC starts of the person's current local day and local ISO week (Monday 00:00 local).

    Sends at or after these instants count towards :class:`FrequencyCap`. Daylight saving is
    respected: the day starts at local midnight whatever the offset, and where midnight is skipped
    (a few zones change clocks at 00:00) at the first instant of the day.
    """
    _check_aware(now)
    now = now.astimezone(UTC)
    zone = _zone(tz)
    today = now.astimezone(zone).date()
    monday = today - timedelta(days=today.weekday())
    return _start_of(today, zone), _start_of(monday, zone)


def cap_decision(cap: FrequencyCap, sent_today: int, sent_this_week: int) -> str | None:
    """Whether one more send fits the cap: None, or ``"frequency_cap_day"`` / ``"frequency_cap_week"``.

    ``sent_today`` / ``sent_this_week`` count sends since the starts :func:`cap_windows` gives. The
    daily cap is checked first, so a person at both limits gets ``"frequency_cap_day"``.
    """
    if sent_today < 0:
        raise ValueError(f"sent_today must be >= 0, got {sent_today}")
    if sent_this_week < 0:
        raise ValueError(f"sent_this_week must be >= 0, got {sent_this_week}")
    if cap.per_day is not None and sent_today >= cap.per_day:
        return "frequency_cap_day"
    if cap.per_week is not None and sent_this_week >= cap.per_week:
        return "frequency_cap_week"
    return None


# ----------------------------------------------------------------------------------- quiet hours

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2}))?$")
_SEPARATORS = re.compile(r"\s*(?:-|–|—|~|～|至|to)\s*")


def _parse_clock(text: str, what: str, whole: str, *, allow_24: bool) -> time:
    m = _CLOCK.match(text.strip())
    if not m:
        raise ValueError(f"quiet hours {whole!r}: {what} time {text.strip()!r} is not HH:MM")
    hour, minute, second = int(m[1]), int(m[2]), int(m[3] or 0)
    if allow_24 and (hour, minute, second) == (24, 0, 0):
        return time(0)
    if hour > 23:
        raise ValueError(f"quiet hours {whole!r}: {what} hour {hour} is out of range 0-23")
    if minute > 59:
        raise ValueError(f"quiet hours {whole!r}: {what} minute {minute} is out of range 0-59")
    if second > 59:
        raise ValueError(f"quiet hours {whole!r}: {what} second {second} is out of range 0-59")
    return time(hour, minute, second)


@dataclass(frozen=True)
class QuietHours:
    """Quiet hours (免打扰时段) in the person's local time: no sends from ``start`` until ``end``.

    ``start`` is inside the window and ``end`` is not. ``start > end`` wraps midnight
    (21:00–09:00 is 21:00 to 09:00 the next morning); ``start == end`` means no quiet hours.
    """

    start: time
    end: time

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            value = getattr(self, name)
            if not isinstance(value, time):
                raise ValueError(f"QuietHours.{name} must be a datetime.time, got {value!r}")
            if value.tzinfo is not None:
                raise ValueError(f"QuietHours.{name} must be a naive local time, got {value!r}")
            if value.fold:
                object.__setattr__(self, name, value.replace(fold=0))  # a wall time; fold is chosen per day

    @classmethod
    def parse(cls, text: str) -> QuietHours:
        """Parse ``"21:00-09:00"`` (also ``–``, ``~``, ``至``; ``HH:MM[:SS]``; an end of ``24:00``)."""
        if not isinstance(text, str):
            raise ValueError(f"quiet hours must be text like '21:00-09:00', got {text!r}")
        parts = _SEPARATORS.split(text.strip())
        if len(parts) != 2 or not all(parts):
            raise ValueError(f"quiet hours {text!r}: expected 'HH:MM-HH:MM', e.g. '21:00-09:00'")
        start = _parse_clock(parts[0], "start", text, allow_24=False)
        end = _parse_clock(parts[1], "end", text, allow_24=True)
        return cls(start, end)

    def contains(self, local: time) -> bool:
        """Whether the local wall-clock time ``local`` is inside the quiet window."""
        local = local.replace(tzinfo=None, fold=0)
        if self.start == self.end:
            return False
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end


def quiet_until(now: datetime, tz: str, quiet: QuietHours | None) -> datetime | None:
    """When quiet hours (免打扰) end for a person: the UTC instant to send at, or None to send now.

    None when there are no quiet hours or the person's local time at ``now`` is outside the window.
    Inside it, the first later instant whose local time is outside the window: normally the next
    local ``end`` (today's if still ahead, else tomorrow's). Daylight saving is followed:

    - where ``end`` does not exist that day (clocks going forward), the first valid instant after
      it — quiet 01:00–02:30 in New York on the spring-forward day opens at 03:00 EDT;
    - in a fold (clocks going back) the first ``end`` after ``now``, which may be the repeated one;
      and if the clock is set back out of the window through ``start``, that transition — quiet
      01:30–02:30 at 01:45 EDT on the fall-back day opens at 02:00 EDT, which becomes 01:00 EST;
    - if a skipped stretch means the window cannot open today, tomorrow's ``end``.
    """
    _check_aware(now)
    now = now.astimezone(UTC)
    zone = _zone(tz)
    if quiet is None or quiet.start == quiet.end:
        return None
    if not quiet.contains(_wall(now, zone).time()):
        return None
    current = now
    # Normally one step. Another is needed only when a gap pushes the opening instant back into
    # the window (a window covering all of the day but a skipped stretch): then it opens tomorrow.
    for _ in range(4):
        local = _wall(current, zone)
        if not quiet.contains(local.time()):
            break
        # The next instant whose wall time is ``end``; yesterday's date too, for a fold that sets the
        # clock back across midnight.
        days = (local.date() + timedelta(days=k) for k in (-1, 0, 1))
        opening = min(i for day in days for i in _instants(datetime.combine(day, quiet.end), zone) if i > current)
        # Clocks going back can also jump out of the window through ``start`` before ``end`` comes
        # (quiet 01:30-02:30, 01:59 EDT -> 01:00 EST): then the window opens at that transition.
        change = _first_change(current, opening, zone)
        if (
            change is not None
            and change < opening
            and _offset(change, zone) < _offset(current, zone)
            and not quiet.contains(_wall(change, zone).time())
        ):
            opening = change
        current = opening
    return current


# ------------------------------------------------------------------------------------ rate limit


class RateLimiter:
    """A token bucket (限流): ``rate_per_second`` tokens a second, at most ``burst`` saved up.

    Time is injected: ``now`` is a monotonic seconds source (``time.monotonic`` in production, a
    fake in tests); nothing sleeps. The bucket starts full. ``burst`` defaults to one second's
    worth (``ceil(rate_per_second)``, at least 1). A rate of 0 (or None) means unlimited:
    :meth:`take` grants everything and :meth:`wait_time` is 0. Safe to share between threads.
    """

    def __init__(self, rate_per_second: float | None, burst: int | None = None, *, now: Callable[[], float]) -> None:
        if rate_per_second is not None and (not math.isfinite(rate_per_second) or rate_per_second < 0):
            raise ValueError(f"rate_per_second must be a finite number >= 0, got {rate_per_second!r}")
        self._rate = float(rate_per_second or 0.0)
        if burst is None:
            burst = max(1, math.ceil(self._rate))
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst!r}")
        self._burst = burst
        self._now = now
        self._lock = threading.Lock()
        self._tokens = float(burst)
        self._last = now()

    @property
    def unlimited(self) -> bool:
        return self._rate == 0.0

    def _refill(self) -> None:
        t = self._now()
        elapsed = max(0.0, t - self._last)  # a clock that steps back refills nothing
        self._last = max(self._last, t)
        self._tokens = min(float(self._burst), self._tokens + elapsed * self._rate)

    def take(self, n: int) -> int:
        """Take up to ``n`` tokens available now; return how many were taken (0 … n)."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if self.unlimited:
            return n
        with self._lock:
            self._refill()
            got = min(n, math.floor(self._tokens + 1e-9))  # tolerate float dust (0.9999999…)
            self._tokens = max(0.0, self._tokens - got)
            return got

    def wait_time(self, n: int = 1) -> float:
        """Seconds until ``n`` tokens are available (0.0 if they are now). ValueError if ``n`` > burst."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if self.unlimited:
            return 0.0
        if n > self._burst:
            raise ValueError(f"n={n} exceeds the bucket size burst={self._burst}; it can never be available")
        with self._lock:
            self._refill()
            missing = n - self._tokens
            return 0.0 if missing <= 1e-9 else missing / self._rate


# ------------------------------------------------------------------------------ channel fallback


def choose_channel(
    preferred: Sequence[str], reachable: Callable[[str], str | None]
) -> tuple[str | None, list[tuple[str, str]]]:
    """Channel fallback (渠道降级): the first channel in ``preferred`` the person can be reached on.

    ``reachable(channel)`` returns None when the person can be sent on ``channel``, else a reason
    code (``"no_address"``, ``"no_consent"``, ``"opted_out"`` …). Returns the chosen channel (None
    when none is reachable) and the ``(channel, reason)`` pairs skipped on the way, in order — so
    "no email address → SMS" reads as ``("sms", [("email", "no_address")])``. A channel listed
    twice is asked once; channels after the chosen one are not asked.
    """
    skipped: list[tuple[str, str]] = []
    seen: set[str] = set()
    for channel in preferred:
        if channel in seen:
            continue
        seen.add(channel)
        reason = reachable(channel)
        if reason is None:
            return channel, skipped
        skipped.append((channel, reason))
    return None, skipped
