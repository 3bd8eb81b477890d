"""Sentiment (情感标签): how a profile's reviews read — 正面 positive, 中性 neutral, 负面 negative.

Every review's text (``title`` and ``body``) is scored by the scorer of its language: a
:class:`SentimentScorer` gives each text the probability that it is positive (0..1). Scorers are
pluggable — :func:`register_scorer` adds one for a language; the shipped ones use packages that
ship their models: :class:`SnowNLPScorer` (``zh``, snownlp's naive Bayes trained on shopping
reviews) and :class:`VaderScorer` (``en``, the VADER lexicon; compound −1..1 mapped to 0..1).
A review's language is its ``language`` column (``zh-CN``, ``zh_Hans``, ``en-US`` … by prefix),
else a heuristic: mostly CJK characters → ``zh``, Latin letters → ``en``. Reviews in a language
without a scorer are counted on the run and skipped.

A profile's score is the mean of its reviews' scores within ``window_days``, each weighted by
``0.5 ** (age_days / half_life_days)``; score ≥ the second cut point is 正面, below the first 负面,
else 中性. Reviews reach profiles through their order (``orders.identity_idx``) or, failing that,
their customer (``customers.identity_idx``), then ``identity_links``.

Accuracy on the labelled sample ``tests/data/sentiment/labelled.csv`` (docs/tag_models_behaviour.md).
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, timedelta
from typing import Any, Protocol

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tessera.domain.tags import Tag
from tessera.services.tag_runs import ComputeContext
from tessera.tagmodels import ModelSpec, register

VALUES = ["正面", "中性", "负面"]


class SentimentScorer(Protocol):
    """Scores texts of one language: each text's probability of being positive, in [0, 1]."""

    def score(self, texts: list[str]) -> list[float]: ...


class SnowNLPScorer:
    """Chinese: snownlp's sentiment (naive Bayes over its shipped shopping-review corpus)."""

    def __init__(self) -> None:
        from snownlp import SnowNLP

        self._snow = SnowNLP

    def score(self, texts: list[str]) -> list[float]:
        return [float(self._snow(t).sentiments) if t.strip() else 0.5 for t in texts]


class VaderScorer:
    """English: VADER's compound score (−1 … 1) as (compound + 1) / 2."""

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        self._vader = SentimentIntensityAnalyzer()

    def score(self, texts: list[str]) -> list[float]:
        return [(float(self._vader.polarity_scores(t)["compound"]) + 1) / 2 for t in texts]


#: language → a factory of its scorer (made on first use and kept: loading a model takes seconds).
SCORERS: dict[str, Callable[[], SentimentScorer]] = {"zh": SnowNLPScorer, "en": VaderScorer}
_MADE: dict[str, SentimentScorer] = {}
_LOCK = threading.Lock()


def register_scorer(language: str, factory: Callable[[], SentimentScorer]) -> None:
    """Use ``factory()`` for reviews in ``language`` (a lower-case code such as ``ja``) from now on."""
    with _LOCK:
        SCORERS[language] = factory
        _MADE.pop(language, None)


def scorer(language: str) -> SentimentScorer | None:
    """The scorer of ``language`` (made once), None when there is none."""
    with _LOCK:
        if language not in _MADE:
            factory = SCORERS.get(language)
            if factory is None:
                return None
            _MADE[language] = factory()
        return _MADE[language]


def _cjk(ch: str) -> bool:
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF or 0xF900 <= o <= 0xFAFF or 0x20000 <= o <= 0x2A6DF


def detect_language(text: str, declared: str | None = None) -> str:
    """The declared language by its prefix (``zh-CN`` → ``zh``), else ``zh`` when CJK characters
    are at least a third of the letters, ``en`` when there are Latin letters, else ``und``."""
    if declared and declared.strip():
        code = declared.strip().lower().replace("_", "-").split("-")[0]
        return {"cn": "zh", "chs": "zh", "cht": "zh", "eng": "en"}.get(code, code)
    cjk = sum(1 for c in text if _cjk(c))
    latin = sum(1 for c in text if c.isascii() and c.isalpha())
    if cjk and cjk * 3 >= cjk + latin:
        return "zh"
    return "en" if latin else "und"


def score_texts(
    texts: Sequence[str], languages: Sequence[str], cache: dict[tuple[str, str], float] | None = None
) -> tuple[list[float | None], Counter[str]]:
    """Each text's positive probability (None: no scorer for its language), and texts per language.

    Each distinct (language, text) is scored once — short reviews repeat ("很好", "Love it!") — and
    ``cache`` keeps the scores across calls (the tags of one run)."""
    cache = {} if cache is None else cache
    out: list[float | None] = [None] * len(texts)
    by: dict[str, list[int]] = {}
    for i, lang in enumerate(languages):
        by.setdefault(lang, []).append(i)
    for lang, idx in sorted(by.items()):
        s = scorer(lang)
        if s is None:
            continue
        todo = sorted({texts[i] for i in idx} - {t for (lg, t) in cache if lg == lang})
        if todo:
            for t, v in zip(todo, s.score(todo), strict=True):
                cache[(lang, t)] = min(max(float(v), 0.0), 1.0)
        for i in idx:
            out[i] = cache[(lang, texts[i])]
    return out, Counter(languages)


class SentimentParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_days: int | None = Field(default=365, ge=1, le=3650, description="reviews older are ignored; null = all")
    half_life_days: float = Field(default=90, gt=0, le=3650, description="a review this old weighs half")
    cut_points: list[float] = Field(
        default=[0.4, 0.6], min_length=2, max_length=2,
        description="[负面 below, 正面 from]: the weighted mean score decides",
    )  # fmt: skip
    min_reviews: int = Field(default=1, ge=1, le=1000, description="profiles with fewer reviews get no value")
    include_title: bool = Field(default=True, description="score the title together with the body")

    @model_validator(mode="after")
    def _cuts(self) -> SentimentParams:
        low, high = self.cut_points
        if not 0 < low <= high < 1:
            raise ValueError("cut_points must be two non-decreasing scores between 0 and 1")
        return self


def _reviews(cur: duckdb.DuckDBPyConnection, now: Any, since: Any, scope: str | None) -> dict[str, Any]:
    in_scope = f"AND profile_idx IN (SELECT profile_idx FROM {scope})" if scope else ""  # noqa: S608 - fixed names
    return cur.execute(
        f"""SELECT * FROM (
            SELECT coalesce(lo.profile_idx, lc.profile_idx) AS profile_idx, coalesce(r.title, '') AS title,
                coalesce(r.body, '') AS body, coalesce(r.language, '') AS language,
                date_diff('second', r.created_at, $now) / 86400.0 AS age
            FROM reviews r
            LEFT JOIN orders o ON o.order_id = r.order_id
            LEFT JOIN identity_links lo ON lo.obs_idx = o.identity_idx
            LEFT JOIN customers c ON c.customer_id = r.customer_id
            LEFT JOIN identity_links lc ON lc.obs_idx = c.identity_idx
            WHERE r.created_at <= $now AND (CAST($since AS TIMESTAMP) IS NULL OR r.created_at >= $since)
              AND (trim(coalesce(r.body, '')) <> '' OR trim(coalesce(r.title, '')) <> '')
        ) WHERE profile_idx IS NOT NULL {in_scope}
        ORDER BY profile_idx, age""",  # noqa: S608 - fixed names
        {"now": now, "since": since},
    ).fetchnumpy()


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _scorer_name(language: str) -> str | None:
    s = scorer(language)
    return None if s is None else type(s).__name__


def _stored_scores(
    cur: duckdb.DuckDBPyConnection, texts: Sequence[str], langs: Sequence[str], cache: dict[tuple[str, str], float]
) -> set[tuple[str, str]]:
    """Fill ``cache`` with the scores earlier runs stored for these texts (by their language's
    current scorer); returns the keys it filled."""
    keys = {(lg, t) for lg, t in zip(langs, texts, strict=True) if (lg, t) not in cache and _scorer_name(lg)}
    if not keys:
        return set()
    by_hash = {(lg, _md5(t)): (lg, t) for lg, t in keys}
    table = pa.table({"language": [k[0] for k in by_hash], "scorer": [_scorer_name(k[0]) for k in by_hash],
                      "text_md5": [k[1] for k in by_hash]})  # fmt: skip
    cur.register("_sent_keys", table)
    try:
        rows = cur.execute(
            """SELECT s.language, s.text_md5, any_value(s.score) FROM tag_sentiment_scores s
            JOIN _sent_keys k USING (language, scorer, text_md5) GROUP BY 1, 2"""
        ).fetchall()
    finally:
        cur.unregister("_sent_keys")
    filled = set()
    for lg, h, score in rows:
        key = by_hash[(lg, h)]
        cache[key] = float(score)
        filled.add(key)
    return filled


def _store_scores(cur: duckdb.DuckDBPyConnection, new: dict[tuple[str, str], float]) -> None:
    if not new:
        return
    table = pa.table({"language": [lg for lg, _ in new], "scorer": [_scorer_name(lg) for lg, _ in new],
                      "text_md5": [_md5(t) for _, t in new], "score": list(new.values())})  # fmt: skip
    cur.register("_sent_new", table)
    try:
        cur.execute("INSERT INTO tag_sentiment_scores SELECT language, scorer, text_md5, score FROM _sent_new")
    finally:
        cur.unregister("_sent_new")


def _text(title: str, body: str, lang: str, include_title: bool) -> str:
    if not include_title or not title.strip():
        return body
    if not body.strip():
        return title
    sep = "。" if lang == "zh" else ". "
    return title.rstrip("。.!！ ") + sep + body


def compute(
    cur: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[Tag, SentimentParams]], ctx: ComputeContext
) -> dict[str, dict[str, Any]]:
    now = ctx.now.astimezone(UTC).replace(tzinfo=None)
    out: dict[str, dict[str, Any]] = {}
    cache: dict[tuple[str, str], float] = {}
    for tag, p in pairs:
        since = now - timedelta(days=p.window_days) if p.window_days else None
        got = _reviews(cur, now, since, ctx.scope)
        langs = [detect_language(t + b, d) for t, b, d in zip(got["title"], got["body"], got["language"], strict=True)]
        texts = [_text(t, b, lg, p.include_title) for t, b, lg in zip(got["title"], got["body"], langs, strict=True)]
        known = set(cache) | _stored_scores(cur, texts, langs, cache)
        scores, per_language = score_texts(texts, langs, cache)
        _store_scores(cur, {k: v for k, v in cache.items() if k not in known})
        ok = np.array([s is not None for s in scores], dtype=bool)
        s = np.array([v if v is not None else 0.0 for v in scores], dtype=np.float64)[ok]
        idx = np.asarray(got["profile_idx"], dtype=np.int64)[ok]
        w = 0.5 ** (np.maximum(np.asarray(got["age"], dtype=np.float64)[ok], 0.0) / p.half_life_days)
        profiles, inverse = np.unique(idx, return_inverse=True)
        n = np.bincount(inverse, minlength=len(profiles))
        wsum = np.bincount(inverse, weights=w, minlength=len(profiles))
        plain = np.bincount(inverse, weights=s, minlength=len(profiles)) / np.maximum(n, 1)
        weighted = np.bincount(inverse, weights=w * s, minlength=len(profiles)) / np.where(wsum > 0, wsum, 1.0)
        mean = np.where(wsum > 0, weighted, plain)  # weights that underflowed: the plain mean
        keep = n >= p.min_reviews
        low, high = p.cut_points
        values = [VALUES[0] if m >= high else VALUES[2] if m < low else VALUES[1] for m in mean[keep]]
        rows = pa.table({"profile_idx": pa.array(profiles[keep], pa.int32()), "value": pa.array(values, pa.string())})
        cur.register("_sent_rows", rows)
        try:
            cur.execute(f"INSERT INTO {ctx.target} SELECT $key, profile_idx, value FROM _sent_rows", {"key": tag.key})  # noqa: S608 - fixed names
        finally:
            cur.unregister("_sent_rows")
        out[tag.key] = {
            "reviews": len(texts),
            "scored": int(ok.sum()),
            "languages": dict(sorted(per_language.items())),
            "unscored_languages": sorted({lg for lg, v in zip(langs, scores, strict=True) if v is None}),
            "profiles": int(keep.sum()),
            "values": dict(sorted(Counter(values).items())),
            "mean_score": round(float(s.mean()), 4) if len(s) else None,
        }
    return out


register(
    ModelSpec(
        name="sentiment",
        title="情感标签",
        title_en="Review sentiment",
        method=(
            "Each review (title + body) is scored 0..1 by its language's scorer (snownlp for Chinese, VADER for "
            "English; pluggable); a profile's recency-weighted mean score over window_days, by the cut points, "
            "gives 正面 / 中性 / 负面."
        ),
        params=SentimentParams,
        compute=compute,
        value_type=lambda _p: "enum",
        enum_values=lambda _p: list(VALUES),
    )
)
