"""Send guards (domain/guards.py): consent, frequency-cap windows, quiet hours, rate limit, fallback."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.domain.guards import (
    CHANNELS,
    FrequencyCap,
    QuietHours,
    RateLimiter,
    cap_decision,
    cap_windows,
    choose_channel,
    consent_decision,
    person_timezone,
    quiet_until,
)

NY = "America/New_York"
SH = "Asia/Shanghai"
MARKETING = tuple(c for c in CHANNELS if c != "webhook")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def wall(instant: datetime, tz: str) -> datetime:
    return instant.astimezone(ZoneInfo(tz)).replace(tzinfo=None)


# --------------------------------------------------------------------------------------- consent


def test_channels() -> None:
    assert CHANNELS == ("email", "sms", "push", "wechat", "webhook")


@pytest.mark.parametrize("channel", CHANNELS)
def test_missing_consent_is_allowed(channel: str) -> None:
    assert consent_decision({}, channel) is None
    assert consent_decision({"name": "王芳", "consent": "yes please"}, channel) is None  # not a dict: ignored


@pytest.mark.parametrize("channel", CHANNELS)
def test_opted_out_refuses_every_channel(channel: str) -> None:
    assert consent_decision({"consent": {channel: True}}, channel, opted_out=True) == "opted_out"


@pytest.mark.parametrize(
    "traits",
    [
        {"consent": {"sms": False}},
        {"sms_consent": False},
        {"sms_opt_in": False},
    ],
)
def test_per_channel_refusal_shapes(traits: dict[str, Any]) -> None:
    assert consent_decision(traits, "sms") == "no_consent"
    for other in CHANNELS:
        if other != "sms":
            assert consent_decision(traits, other) is None


@pytest.mark.parametrize("traits", [{"consent": {"marketing": False}}, {"marketing_opt_out": True}])
def test_marketing_refusal_spares_webhook(traits: dict[str, Any]) -> None:
    for channel in MARKETING:
        assert consent_decision(traits, channel) == "no_consent"
    assert consent_decision(traits, "webhook") is None


def test_unsubscribed_refuses_email_only() -> None:
    traits = {"unsubscribed": True}
    assert consent_decision(traits, "email") == "no_consent"
    for channel in ("sms", "push", "wechat", "webhook"):
        assert consent_decision(traits, channel) is None
    assert consent_decision({"unsubscribed": False}, "email") is None
    assert consent_decision({"marketing_opt_out": False}, "sms") is None


def test_explicit_webhook_false_still_refuses() -> None:
    assert consent_decision({"consent": {"webhook": False}}, "webhook") == "no_consent"
    assert consent_decision({"webhook_consent": "否"}, "webhook") == "no_consent"


def test_refusal_wins_over_grant() -> None:
    assert consent_decision({"consent": {"sms": True}, "marketing_opt_out": True}, "sms") == "no_consent"
    assert consent_decision({"consent": {"email": True, "marketing": False}}, "email") == "no_consent"
    assert consent_decision({"consent": {"email": True}, "email_opt_in": "no"}, "email") == "no_consent"
    assert consent_decision({"email_consent": True, "unsubscribed": "1"}, "email") == "no_consent"


@pytest.mark.parametrize("value", ["false", "FALSE", " False ", "0", "no", "No", "否", "off", "n", 0, False])
def test_false_strings(value: Any) -> None:
    assert consent_decision({"sms_consent": value}, "sms") == "no_consent"
    assert consent_decision({"consent": {"marketing": value}}, "push") == "no_consent"
    assert consent_decision({"marketing_opt_out": value}, "push") is None


@pytest.mark.parametrize("value", ["true", "TRUE", " True", "1", "yes", "YES", "是", "on", "y", 1, True])
def test_true_strings(value: Any) -> None:
    assert consent_decision({"sms_consent": value}, "sms") is None
    assert consent_decision({"sms_consent": value}, "sms", require_opt_in=True) is None
    assert consent_decision({"marketing_opt_out": value}, "push") == "no_consent"
    assert consent_decision({"unsubscribed": value}, "email") == "no_consent"


@pytest.mark.parametrize("value", [None, "", "maybe", "unknown", 2, -1, 0.0, 1.5, [], {}, "truthy"])
def test_unknown_values_are_ignored(value: Any) -> None:
    traits = {
        "consent": {"sms": value, "marketing": value},
        "sms_consent": value,
        "sms_opt_in": value,
        "marketing_opt_out": value,
        "unsubscribed": value,
    }
    assert consent_decision(traits, "sms") is None
    assert consent_decision(traits, "email") is None
    assert consent_decision(traits, "sms", require_opt_in=True) == "no_consent"


def test_require_opt_in() -> None:
    for channel in MARKETING:
        assert consent_decision({}, channel, require_opt_in=True) == "no_consent"
        assert consent_decision({"consent": {channel: True}}, channel, require_opt_in=True) is None
        assert consent_decision({f"{channel}_consent": "是"}, channel, require_opt_in=True) is None
        assert consent_decision({f"{channel}_opt_in": "yes"}, channel, require_opt_in=True) is None
        assert consent_decision({"consent": {"marketing": True}}, channel, require_opt_in=True) is None
    # a grant for another channel is not a grant for this one
    assert consent_decision({"consent": {"email": True}}, "sms", require_opt_in=True) == "no_consent"
    # webhooks never need an opt-in
    assert consent_decision({}, "webhook", require_opt_in=True) is None
    assert consent_decision({"marketing_opt_out": True}, "webhook", require_opt_in=True) is None
    assert consent_decision({}, "sms", opted_out=True, require_opt_in=True) == "opted_out"


def test_unknown_channel() -> None:
    with pytest.raises(ValueError, match="unknown channel 'fax'"):
        consent_decision({}, "fax")


# ------------------------------------------------------------------------------------- time zone


def test_person_timezone() -> None:
    assert person_timezone({"timezone": "America/New_York"}, SH) == NY
    assert person_timezone({"time_zone": " Europe/Paris "}, SH) == "Europe/Paris"
    assert person_timezone({"tz": "UTC"}, SH) == "UTC"
    assert person_timezone({"timezone": "Mars/Olympus", "tz": "Asia/Tokyo"}, SH) == "Asia/Tokyo"
    for bad in ("Mars/Olympus", "", "../etc/passwd", "localtime", 8, None, "asia/shanghai"):
        assert person_timezone({"timezone": bad}, SH) == SH
    assert person_timezone({}, "UTC") == "UTC"
    with pytest.raises(ValueError, match="unknown default time zone 'Nowhere'"):
        person_timezone({}, "Nowhere")


# --------------------------------------------------------------------------------- frequency cap


def test_cap_windows_shanghai_midnight_and_week_boundary() -> None:
    assert date(2026, 1, 4).weekday() == 6  # Sunday
    # Sunday 23:59:59 local is still the old day and the old week (Monday 2025-12-29).
    assert cap_windows(utc(2026, 1, 4, 15, 59, 59), SH) == (utc(2026, 1, 3, 16), utc(2025, 12, 28, 16))
    # Monday 00:00 local starts both a new day and a new week.
    assert cap_windows(utc(2026, 1, 4, 16), SH) == (utc(2026, 1, 4, 16), utc(2026, 1, 4, 16))
    # Tuesday noon: Tuesday's midnight, Monday's midnight.
    assert cap_windows(utc(2026, 1, 6, 4), SH) == (utc(2026, 1, 5, 16), utc(2026, 1, 4, 16))


def test_cap_windows_accept_any_aware_now() -> None:
    shanghai_evening = datetime(2026, 1, 6, 23, 30, tzinfo=ZoneInfo(SH))
    assert cap_windows(shanghai_evening, SH) == (utc(2026, 1, 5, 16), utc(2026, 1, 4, 16))
    assert cap_windows(shanghai_evening, SH)[0].tzinfo is UTC


def test_cap_windows_new_york_spring_forward() -> None:
    # 2026-03-08 (a Sunday): 02:00 EST -> 03:00 EDT, a 23-hour day.
    assert cap_windows(utc(2026, 3, 8, 4, 59), NY) == (utc(2026, 3, 7, 5), utc(2026, 3, 2, 5))  # Sat 23:59 EST
    assert cap_windows(utc(2026, 3, 8, 5), NY) == (utc(2026, 3, 8, 5), utc(2026, 3, 2, 5))  # Sun 00:00 EST
    assert cap_windows(utc(2026, 3, 9, 3, 59), NY) == (utc(2026, 3, 8, 5), utc(2026, 3, 2, 5))  # Sun 23:59 EDT
    assert cap_windows(utc(2026, 3, 9, 4), NY) == (utc(2026, 3, 9, 4), utc(2026, 3, 9, 4))  # Mon 00:00 EDT


def test_cap_windows_new_york_fall_back() -> None:
    # 2026-11-01 (a Sunday): 02:00 EDT -> 01:00 EST, a 25-hour day.
    assert cap_windows(utc(2026, 11, 1, 4), NY) == (utc(2026, 11, 1, 4), utc(2026, 10, 26, 4))  # Sun 00:00 EDT
    assert cap_windows(utc(2026, 11, 1, 6, 30), NY)[0] == utc(2026, 11, 1, 4)  # the second 01:30 (EST)
    assert cap_windows(utc(2026, 11, 2, 4, 59), NY) == (utc(2026, 11, 1, 4), utc(2026, 10, 26, 4))  # Sun 23:59 EST
    assert cap_windows(utc(2026, 11, 2, 5), NY) == (utc(2026, 11, 2, 5), utc(2026, 11, 2, 5))  # Mon 00:00 EST


def test_cap_windows_when_midnight_is_skipped() -> None:
    # Chile springs forward at 24:00 -> 01:00: 2024-09-08 00:00 never happens; the day starts at 01:00 -03.
    day, week = cap_windows(utc(2024, 9, 8, 15), "America/Santiago")
    assert day == utc(2024, 9, 8, 4)
    assert wall(day, "America/Santiago") == datetime(2024, 9, 8, 1)
    assert week == utc(2024, 9, 2, 4)


def test_cap_windows_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        cap_windows(datetime(2026, 1, 1), SH)
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        cap_windows(utc(2026, 1, 1), "Mars/Olympus")


def test_cap_decision() -> None:
    cap = FrequencyCap(per_day=2, per_week=5)
    assert cap_decision(cap, 0, 0) is None
    assert cap_decision(cap, 1, 4) is None
    assert cap_decision(cap, 2, 2) == "frequency_cap_day"
    assert cap_decision(cap, 1, 5) == "frequency_cap_week"
    assert cap_decision(cap, 3, 9) == "frequency_cap_day"  # the daily cap is reported first
    assert cap_decision(FrequencyCap(), 1000, 1000) is None
    assert cap_decision(FrequencyCap(per_week=1), 0, 1) == "frequency_cap_week"
    assert cap_decision(FrequencyCap(per_day=0), 0, 0) == "frequency_cap_day"  # 0 means never
    with pytest.raises(ValueError, match="sent_today"):
        cap_decision(cap, -1, 0)
    with pytest.raises(ValueError, match="sent_this_week"):
        cap_decision(cap, 0, -1)


@pytest.mark.parametrize("kwargs", [{"per_day": -1}, {"per_week": -3}, {"per_day": 1.5}, {"per_week": True}])
def test_frequency_cap_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=f"FrequencyCap.{next(iter(kwargs))}"):
        FrequencyCap(**kwargs)


# ----------------------------------------------------------------------------------- quiet hours


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("21:00-09:00", time(21), time(9)),
        ("21:00 – 09:00", time(21), time(9)),
        ("9:30~12:00", time(9, 30), time(12)),
        ("22:00至08:00", time(22), time(8)),
        ("22:00-24:00", time(22), time(0)),
        ("12:00:30-13:15:45", time(12, 0, 30), time(13, 15, 45)),
        (" 00:00-00:00 ", time(0), time(0)),
    ],
)
def test_quiet_hours_parse(text: str, start: time, end: time) -> None:
    assert QuietHours.parse(text) == QuietHours(start, end)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("21:00", "expected 'HH:MM-HH:MM'"),
        ("", "expected 'HH:MM-HH:MM'"),
        ("21:00-09:00-10:00", "expected 'HH:MM-HH:MM'"),
        ("25:00-09:00", "start hour 25 is out of range"),
        ("21:00-24:30", "end hour 24 is out of range"),
        ("24:00-09:00", "start hour 24 is out of range"),
        ("21:61-09:00", "start minute 61 is out of range"),
        ("21:00-09:00:99", "end second 99 is out of range"),
        ("nine-09:00", "start time 'nine' is not HH:MM"),
        ("21:00-9", "end time '9' is not HH:MM"),
    ],
)
def test_quiet_hours_parse_errors(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        QuietHours.parse(text)


def test_quiet_hours_validate() -> None:
    with pytest.raises(ValueError, match="QuietHours.start"):
        QuietHours("21:00", time(9))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="QuietHours.end must be a naive"):
        QuietHours(time(21), time(9, tzinfo=UTC))
    assert QuietHours(time(1, fold=1), time(2)).start.fold == 0


def test_quiet_hours_contains() -> None:
    night = QuietHours.parse("21:00-09:00")
    assert night.contains(time(21)) and night.contains(time(23, 59)) and night.contains(time(0))
    assert night.contains(time(8, 59, 59, 999999))
    assert not night.contains(time(9)) and not night.contains(time(20, 59, 59))
    lunch = QuietHours.parse("12:00-14:00")
    assert lunch.contains(time(12)) and lunch.contains(time(13, 59))
    assert not lunch.contains(time(14)) and not lunch.contains(time(11, 59))
    assert not QuietHours.parse("10:00-10:00").contains(time(10))


def test_quiet_until_wrapping_midnight() -> None:
    night = QuietHours.parse("21:00-09:00")
    # Shanghai is UTC+8: 22:00 local on 1 Jan -> 09:00 local on 2 Jan.
    assert quiet_until(utc(2026, 1, 1, 14), SH, night) == utc(2026, 1, 2, 1)
    assert quiet_until(utc(2026, 1, 1, 13), SH, night) == utc(2026, 1, 2, 1)  # 21:00 exactly is quiet
    assert quiet_until(utc(2026, 1, 1, 19), SH, night) == utc(2026, 1, 2, 1)  # 03:00 -> same morning
    assert quiet_until(utc(2026, 1, 2, 0, 59, 59), SH, night) == utc(2026, 1, 2, 1)
    assert quiet_until(utc(2026, 1, 2, 1), SH, night) is None  # 09:00 exactly: open
    assert quiet_until(utc(2026, 1, 1, 12, 59, 59), SH, night) is None  # 20:59:59
    assert quiet_until(utc(2026, 1, 1, 6), SH, night) is None  # 14:00


def test_quiet_until_not_wrapping() -> None:
    lunch = QuietHours.parse("12:00-14:00")
    assert quiet_until(utc(2026, 6, 1, 16, 30), NY, lunch) == utc(2026, 6, 1, 18)  # 12:30 EDT -> 14:00 EDT
    assert quiet_until(utc(2026, 6, 1, 15, 59), NY, lunch) is None
    assert quiet_until(utc(2026, 6, 1, 18), NY, lunch) is None


def test_quiet_until_no_window() -> None:
    assert quiet_until(utc(2026, 1, 1, 14), SH, None) is None
    assert quiet_until(utc(2026, 1, 1, 14), SH, QuietHours.parse("22:00-22:00")) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        quiet_until(datetime(2026, 1, 1), SH, None)
    with pytest.raises(ValueError, match="unknown time zone"):
        quiet_until(utc(2026, 1, 1), "Nowhere/Special", QuietHours.parse("21:00-09:00"))


def test_quiet_until_accepts_any_aware_now() -> None:
    quiet = QuietHours.parse("00:00-01:30")
    second_one_am = datetime(2026, 11, 1, 1, 0, fold=1, tzinfo=ZoneInfo(NY))  # 01:00 EST
    assert quiet_until(second_one_am, NY, quiet) == utc(2026, 11, 1, 6, 30)
    assert quiet_until(second_one_am.replace(fold=0), NY, quiet) == utc(2026, 11, 1, 5, 30)


def test_quiet_until_spring_forward_gap() -> None:
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT, so 02:30 does not exist that night.
    quiet = QuietHours.parse("01:00-02:30")
    for now in (utc(2026, 3, 8, 6), utc(2026, 3, 8, 6, 59, 59)):  # 01:00 and 01:59:59 EST
        opens = quiet_until(now, NY, quiet)
        assert opens == utc(2026, 3, 8, 7)
        assert wall(opens, NY) == datetime(2026, 3, 8, 3)  # 03:00 EDT, the first instant after 02:30
    assert quiet_until(utc(2026, 3, 8, 7), NY, quiet) is None  # 03:00 EDT: open


def test_quiet_until_overnight_across_dst_changes() -> None:
    night = QuietHours.parse("21:00-09:00")
    # Sat 22:00 EST -> Sun 09:00 EDT: 11 wall hours, 10 real hours.
    assert quiet_until(utc(2026, 3, 8, 3), NY, night) == utc(2026, 3, 8, 13)
    # Sat 22:00 EDT -> Sun 09:00 EST: 11 wall hours, 12 real hours.
    assert quiet_until(utc(2026, 11, 1, 2), NY, night) == utc(2026, 11, 1, 14)


def test_quiet_until_fall_back_fold() -> None:
    # 2026-11-01 in New York: 02:00 EDT becomes 01:00 EST, so 01:00-02:00 happens twice.
    quiet = QuietHours.parse("00:00-01:30")
    assert quiet_until(utc(2026, 11, 1, 4, 30), NY, quiet) == utc(2026, 11, 1, 5, 30)  # -> 01:30 EDT
    assert quiet_until(utc(2026, 11, 1, 5, 45), NY, quiet) is None  # 01:45 EDT
    assert quiet_until(utc(2026, 11, 1, 6), NY, quiet) == utc(2026, 11, 1, 6, 30)  # 01:00 EST -> 01:30 EST
    # Set back out of the window through its start: 01:45 EDT -> 01:00 EST at 06:00 UTC.
    assert quiet_until(utc(2026, 11, 1, 5, 45), NY, QuietHours.parse("01:30-02:30")) == utc(2026, 11, 1, 6)
    # A window that wraps: after 01:55 EDT the repeated 01:45 (EST) comes before tomorrow's.
    assert quiet_until(utc(2026, 11, 1, 5, 55), NY, QuietHours.parse("01:50-01:45")) == utc(2026, 11, 1, 6, 45)


def test_quiet_until_when_the_gap_swallows_the_opening() -> None:
    # Santiago skips 00:00-01:00 on 2024-09-08. Quiet 00:45-00:30 is open only 00:30-00:45, which
    # does not happen that day, so the window opens at 00:30 the day after.
    quiet = QuietHours.parse("00:45-00:30")
    opens = quiet_until(utc(2024, 9, 8, 3), "America/Santiago", quiet)  # Sat 23:00 -04
    assert opens == utc(2024, 9, 9, 3, 30)
    assert wall(opens, "America/Santiago") == datetime(2024, 9, 9, 0, 30)


# ----------------------------------------------------------------------- properties over all zones

ZONES = sorted(available_timezones() - {"localtime", "posixrules"})
DST_ZONES = [NY, SH, "Europe/London", "America/Santiago", "America/Havana", "Australia/Lord_Howe",
             "Antarctica/Troll", "Pacific/Chatham", "America/St_Johns", "Asia/Tehran", "Pacific/Apia"]  # fmt: skip


@cache
def _transitions() -> tuple[datetime, ...]:
    """Offset changes of a few zones in 2010-2030, found by scanning (independently of guards.py)."""
    found: list[datetime] = []
    for tz in DST_ZONES:
        zone = ZoneInfo(tz)
        t = utc(2010, 1, 1)
        while t < utc(2030, 1, 1):
            nxt = t + timedelta(hours=12)
            if t.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
                lo, hi = t, nxt
                while hi - lo > timedelta(seconds=1):
                    mid = lo + (hi - lo) / 2
                    if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                        lo = mid
                    else:
                        hi = mid
                found.append(hi.replace(microsecond=0))
            t = nxt
    return tuple(found)


ANY_INSTANT = st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
NEAR_TRANSITION = st.builds(
    lambda i, s: _transitions()[i % len(_transitions())] + timedelta(seconds=s),
    st.integers(min_value=0),
    st.integers(min_value=-30 * 3600, max_value=30 * 3600),
)
INSTANTS = st.one_of(ANY_INSTANT, NEAR_TRANSITION)
TZ_FOR = st.one_of(st.sampled_from(ZONES), st.sampled_from(DST_ZONES))
CLOCK = st.one_of(st.times(), st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45, 59])))


def _offset(instant: datetime, tz: str) -> timedelta:
    offset = instant.astimezone(ZoneInfo(tz)).utcoffset()
    assert offset is not None
    return offset


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(now=INSTANTS, tz=TZ_FOR, start=CLOCK, end=CLOCK, frac=st.floats(0, 1, exclude_max=True))
def test_quiet_until_properties(now: datetime, tz: str, start: time, end: time, frac: float) -> None:
    quiet = QuietHours(start, end)
    local = wall(now, tz)
    opens = quiet_until(now, tz, quiet)
    assert (opens is None) == (not quiet.contains(local.time()))
    if opens is None:
        return
    assert opens.tzinfo is UTC
    assert opens > now
    assert not quiet.contains(wall(opens, tz).time())  # open at that instant (possibly exactly `end`) …
    assert quiet.contains(wall(opens - timedelta(microseconds=1), tz).time())  # … and quiet just before
    between = min(now + (opens - now) * frac, opens - timedelta(microseconds=1))
    assert quiet.contains(wall(between, tz).time())  # never open in between: it is the first opening
    # At most a day of wall-clock time, plus the hour(s) a fold repeats …
    limit = timedelta(hours=24) + max(timedelta(0), _offset(now, tz) - _offset(opens, tz))
    target = datetime.combine(local.date() + timedelta(days=local.time() >= end), end)
    if wall(target.replace(tzinfo=ZoneInfo(tz)).astimezone(UTC), tz) != target:
        limit += timedelta(hours=24)  # … or two when that day's `end` is skipped by a gap
    assert opens - now <= limit


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(now=INSTANTS, tz=TZ_FOR)
def test_cap_windows_properties(now: datetime, tz: str) -> None:
    day, week = cap_windows(now, tz)
    today = wall(now, tz).date()
    monday = today - timedelta(days=today.weekday())
    assert day.tzinfo is UTC and week.tzinfo is UTC
    assert week <= day <= now
    assert wall(day, tz).date() == today  # the day starts today …
    assert wall(day - timedelta(microseconds=1), tz).date() < today  # … and not a moment later
    assert wall(week, tz).date() >= monday
    assert wall(week - timedelta(microseconds=1), tz).date() < monday


# ------------------------------------------------------------------------------------ rate limit


class FakeMonotonic:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_rate_limiter_token_bucket() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(10, now=clock)  # burst defaults to one second's worth: 10
    assert limiter.take(15) == 10
    assert limiter.take(1) == 0
    assert limiter.wait_time() == pytest.approx(0.1)
    assert limiter.wait_time(5) == pytest.approx(0.5)
    clock.t += 0.1
    assert limiter.wait_time() == 0.0
    assert limiter.take(1) == 1
    clock.t += 0.35
    assert limiter.take(5) == 3  # 3.5 tokens: 3 whole ones
    assert limiter.wait_time(1) == pytest.approx(0.05)
    clock.t += 3600
    assert limiter.take(100) == 10  # never more than the burst is saved up
    assert limiter.take(0) == 0


def test_rate_limiter_explicit_burst_and_fractional_rate() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(0.5, burst=3, now=clock)
    assert limiter.take(2) == 2
    assert limiter.wait_time(3) == pytest.approx(4.0)
    clock.t += 4.0
    assert limiter.take(3) == 3
    slow = RateLimiter(0.5, now=clock)  # burst defaults to at least 1
    assert slow.take(5) == 1
    assert slow.wait_time() == pytest.approx(2.0)


def test_rate_limiter_float_dust() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(3, burst=1, now=clock)
    assert limiter.take(1) == 1
    for _ in range(20):
        clock.t += limiter.wait_time()
        assert limiter.take(1) == 1


def test_rate_limiter_clock_stepping_back_refills_nothing() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(1, burst=1, now=clock)
    assert limiter.take(1) == 1
    clock.t -= 50
    assert limiter.take(1) == 0
    clock.t += 50.5
    assert limiter.take(1) == 0  # only 0.5 s passed since the latest reading
    clock.t += 0.5
    assert limiter.take(1) == 1


@pytest.mark.parametrize("rate", [0, 0.0, None])
def test_rate_limiter_unlimited(rate: float | None) -> None:
    limiter = RateLimiter(rate, now=FakeMonotonic())
    assert limiter.unlimited
    assert limiter.take(1_000_000) == 1_000_000
    assert limiter.wait_time(1_000_000) == 0.0


def test_rate_limiter_validates() -> None:
    clock = FakeMonotonic()
    with pytest.raises(ValueError, match="rate_per_second"):
        RateLimiter(-1, now=clock)
    with pytest.raises(ValueError, match="rate_per_second"):
        RateLimiter(float("inf"), now=clock)
    with pytest.raises(ValueError, match="burst"):
        RateLimiter(5, burst=0, now=clock)
    limiter = RateLimiter(5, burst=2, now=clock)
    with pytest.raises(ValueError, match="n must be >= 0"):
        limiter.take(-1)
    with pytest.raises(ValueError, match="exceeds the bucket size burst=2"):
        limiter.wait_time(3)


def test_rate_limiter_threads_never_overdraw() -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(100, burst=50, now=clock)
    taken: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        got = sum(limiter.take(1) for _ in range(200))
        with lock:
            taken.append(got)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(taken) == 50


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.01, 1000),
    burst=st.integers(1, 50),
    first=st.integers(0, 60),
    n=st.integers(0, 50),
)
def test_rate_limiter_wait_time_is_enough(rate: float, burst: int, first: int, n: int) -> None:
    clock = FakeMonotonic()
    limiter = RateLimiter(rate, burst=burst, now=clock)
    assert limiter.take(first) == min(first, burst)
    n = min(n, burst)
    wait = limiter.wait_time(n)
    assert wait >= 0.0
    clock.t += wait
    assert limiter.take(n) == n


# ------------------------------------------------------------------------------ channel fallback


def _reachability(reasons: dict[str, str]) -> Callable[[str], str | None]:
    asked: list[str] = []

    def reachable(channel: str) -> str | None:
        asked.append(channel)
        return reasons.get(channel)

    reachable.asked = asked  # type: ignore[attr-defined]
    return reachable


def test_choose_channel_falls_back() -> None:
    reachable = _reachability({"email": "no_address"})
    assert choose_channel(["email", "sms", "push"], reachable) == ("sms", [("email", "no_address")])
    assert reachable.asked == ["email", "sms"]  # type: ignore[attr-defined]


def test_choose_channel_first_choice_and_none() -> None:
    assert choose_channel(["wechat", "sms"], _reachability({})) == ("wechat", [])
    reasons = {"email": "opted_out", "sms": "no_consent", "push": "no_address"}
    assert choose_channel(["email", "sms", "push"], _reachability(reasons)) == (
        None,
        [("email", "opted_out"), ("sms", "no_consent"), ("push", "no_address")],
    )
    assert choose_channel([], _reachability({})) == (None, [])


def test_choose_channel_asks_each_channel_once() -> None:
    reachable = _reachability({"email": "no_address", "sms": "no_consent"})
    assert choose_channel(["email", "email", "sms", "webhook"], reachable) == (
        "webhook",
        [("email", "no_address"), ("sms", "no_consent")],
    )
    assert reachable.asked == ["email", "sms", "webhook"]  # type: ignore[attr-defined]


def test_choose_channel_with_consent() -> None:
    traits = {"email": None, "phone": "+8613800138000", "consent": {"email": True}, "sms_consent": "否"}

    def reachable(channel: str) -> str | None:
        if channel == "email" and not traits.get("email"):
            return "no_address"
        return consent_decision(traits, channel)

    assert choose_channel(["email", "sms", "webhook"], reachable) == (
        "webhook",
        [("email", "no_address"), ("sms", "no_consent")],
    )
