"""The demo's calendar: days before ``now``, shopping seasonality and the campaign calendar.

Day ``d`` is the local (Asia/Shanghai, UTC+8) date ``today + d``; history covers days
``-HISTORY_DAYS .. -1`` so every generated time is before local midnight of today, hence before
``now``. Demand per day: a month profile, weekends, the Double 11 (11-11) and 618 (06-18) peaks
with their pre-sales, Double 12, the Spring Festival gift season (年货节) and the Spring Festival
dip (logistics stop for about two weeks).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np

from tessera.demo.texts import CAMPAIGNS

HISTORY_DAYS = 730  # orders: two years, so every month appears twice
EVENT_DAYS = 180  # behavioural events: about six months
LOCAL_OFFSET = timedelta(hours=8)
DAY_US = 86_400_000_000

#: Spring Festival (春节) dates.
SPRING_FESTIVAL = {
    2019: date(2019, 2, 5), 2020: date(2020, 1, 25), 2021: date(2021, 2, 12), 2022: date(2022, 2, 1),
    2023: date(2023, 1, 22), 2024: date(2024, 2, 10), 2025: date(2025, 1, 29), 2026: date(2026, 2, 17),
    2027: date(2027, 2, 6), 2028: date(2028, 1, 26), 2029: date(2029, 2, 13), 2030: date(2030, 2, 3),
    2031: date(2031, 1, 23), 2032: date(2032, 2, 11), 2033: date(2033, 1, 31), 2034: date(2034, 2, 19),
    2035: date(2035, 2, 8), 2036: date(2036, 1, 28),
}  # fmt: skip
_MONTH = np.array([1.05, 0.8, 0.95, 1.0, 1.0, 1.1, 0.9, 0.9, 1.0, 1.1, 1.5, 1.25])
#: Share of the day's activity per local hour.
HOUR_WEIGHTS = np.array([
    0.8, 0.4, 0.2, 0.1, 0.1, 0.1, 0.2, 0.5, 1.0, 1.3, 1.4, 1.5,
    1.8, 1.6, 1.3, 1.3, 1.4, 1.4, 1.5, 1.8, 2.2, 2.5, 2.3, 1.6,
])  # fmt: skip
_CAMPAIGN_INDEX = {c[0]: i for i, c in enumerate(CAMPAIGNS)}


@dataclass(frozen=True)
class Calendar:
    now_us: int
    midnight_us: int  # local midnight of today, as UTC microseconds
    today: date
    month: np.ndarray  # per history day (index d + HISTORY_DAYS), 1..12
    year: np.ndarray
    weight: np.ndarray  # demand per day
    cdf: np.ndarray  # len HISTORY_DAYS + 1
    campaign: np.ndarray  # per day: index into CAMPAIGNS or -1
    peak: np.ndarray  # per day: 0 none, 1 Double 11 / 618 window, 2 the day itself
    double11_day: np.ndarray  # bool per day

    def day_index(self, day: np.ndarray) -> np.ndarray:
        return np.asarray(day) + HISTORY_DAYS

    def sample_days(self, rng: np.random.Generator, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """A day in ``[first, last]`` per draw (days ≤ -1), following demand."""
        lo = self.cdf[np.asarray(first) + HISTORY_DAYS]
        hi = self.cdf[np.asarray(last) + HISTORY_DAYS + 1]
        u = lo + (hi - lo) * rng.random(len(lo))
        idx = np.searchsorted(self.cdf, u, side="right") - 1
        return np.clip(idx, np.asarray(first) + HISTORY_DAYS, np.asarray(last) + HISTORY_DAYS) - HISTORY_DAYS

    def sample_seconds(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Seconds after local midnight, following the hour-of-day profile."""
        p = HOUR_WEIGHTS / HOUR_WEIGHTS.sum()
        hours = rng.choice(24, size=n, p=p)
        return hours * 3600 + rng.integers(0, 3600, n)

    def micros(self, day: np.ndarray, seconds: np.ndarray) -> np.ndarray:
        return (
            self.midnight_us
            + np.asarray(day, dtype=np.int64) * DAY_US
            + np.asarray(seconds, dtype=np.int64) * 1_000_000
        )

    def date_of(self, day: int) -> date:
        return self.today + timedelta(days=day)


def build_calendar(now: datetime) -> Calendar:
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    local = now.astimezone(UTC) + LOCAL_OFFSET
    today = local.date()
    midnight_utc = datetime(today.year, today.month, today.day, tzinfo=UTC) - LOCAL_OFFSET
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    now_us = (now.astimezone(UTC) - epoch) // timedelta(microseconds=1)
    midnight_us = (midnight_utc - epoch) // timedelta(microseconds=1)
    n = HISTORY_DAYS
    dates = [today + timedelta(days=d) for d in range(-n, 0)]
    month = np.array([d.month for d in dates])
    year = np.array([d.year for d in dates])
    weekday = np.array([d.weekday() for d in dates])
    weight = _MONTH[month - 1] * np.where(weekday >= 5, 1.15, 1.0)
    campaign = np.full(n, -1, dtype=np.int64)
    peak = np.zeros(n, dtype=np.int64)
    d11 = np.zeros(n, dtype=bool)
    for i, d in enumerate(dates):
        md = (d.month, d.day)
        cny = SPRING_FESTIVAL.get(d.year + (1 if d.month >= 11 else 0))
        to_cny = (cny - d).days if cny else 999
        if (10, 24) <= md <= (11, 11):
            campaign[i], peak[i] = _CAMPAIGN_INDEX["double11"], 1
            weight[i] *= 1.8
            if md == (11, 11):
                weight[i] *= 5.0
                peak[i] = 2
                d11[i] = True
        elif md == (11, 12):
            weight[i] *= 1.6
        elif (6, 1) <= md <= (6, 18):
            campaign[i], peak[i] = _CAMPAIGN_INDEX["d618"], 1
            weight[i] *= 1.6
            if md == (6, 18):
                weight[i] *= 3.8
                peak[i] = 2
        elif md == (12, 12):
            campaign[i] = _CAMPAIGN_INDEX["double12"]
            weight[i] *= 2.5
        elif (3, 15) <= md <= (4, 15):
            campaign[i] = _CAMPAIGN_INDEX["spring"]
        elif (7, 1) <= md <= (8, 15):
            campaign[i] = _CAMPAIGN_INDEX["summer"]
        elif (9, 20) <= md <= (10, 7):
            campaign[i] = _CAMPAIGN_INDEX["golden_week"]
        if 8 <= to_cny <= 24:
            campaign[i] = _CAMPAIGN_INDEX["cny"]
            weight[i] *= 1.35
        # Spring Festival dip: a week either side of the festival (this year's or last year's).
        near = [abs((c - d).days) for c in (SPRING_FESTIVAL.get(d.year), SPRING_FESTIVAL.get(d.year + 1)) if c]
        if near and min(near) <= 7:
            weight[i] *= 0.3
    cdf = np.concatenate([[0.0], np.cumsum(weight)])
    return Calendar(
        now_us=int(now_us),
        midnight_us=int(midnight_us),
        today=today,
        month=month,
        year=year,
        weight=weight,
        cdf=cdf,
        campaign=campaign,
        peak=peak,
        double11_day=d11,
    )
