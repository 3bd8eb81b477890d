"""Profile columns in memory (内存列): what the fast audience count reads instead of running SQL.

:class:`ProfileColumns` reads, on first use, only the columns a request names and keeps them while
they are current. A column is described by a :class:`ColumnSpec` — a statement over the analytic
store and the tables it reads — which :mod:`tessera.compiler.columnar` writes from the condition
compiler's own readings of a value (so both give the same answer); this module only reads, holds
and indexes. A column is either:

* a set of profiles (``profile_idx`` as a :class:`pyroaring.BitMap`): every profile, the holders of
  an identifier type, the stored members of an audience, the profiles whose trait is set …; or
* a :class:`ValueIndex`: rows (profile, key) sorted by key — numbers as float64, instants as int64
  microseconds (UTC), text as int32 codes into a dictionary, booleans as 0/1, month*100 + day —
  with roaring bitmaps of the profiles per key bucket, so a comparison is a few bitmap unions plus
  two small sorted slices at its edges. A profile may have several rows (a tag's values, a list).

**Staying current.** Every column names the tables it is read from; the store counts changes per
table (:meth:`AnalyticStore.changed`), and a column whose table moved since it was read is read
again on its next use. **Memory.** Columns are held until their bytes pass ``budget_bytes``; then
the least recently used ones (not needed by the current request) are dropped.
"""

from __future__ import annotations

import array
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pyroaring import BitMap

from tessera.stores.analytic import AnalyticStore

#: Bytes of columns held before the least recently used are dropped.
DEFAULT_BUDGET = 2 << 30

#: Target number of key buckets of a value index (each a bitmap; a comparison reads O(log) of them).
_BUCKETS = 256
#: A bucket never holds fewer rows than this (small columns need no buckets to be fast).
_MIN_BUCKET_ROWS = 1024
#: Indexes with at most this many distinct keys get a bucket per key (an equality is then one bitmap).
_DISTINCT_BUCKETS = 1024
_FANOUT = 4


def bitmap_of(sorted_ids: np.ndarray) -> BitMap:
    """A bitmap of ascending uint32 ids (through ``array.array``: ~10x faster than from numpy)."""
    return BitMap(array.array("I", np.ascontiguousarray(sorted_ids, dtype=np.uint32).tobytes()))


def union(parts: Sequence[BitMap]) -> BitMap:
    """The union of bitmaps; the one bitmap itself when there is one (treat results as read-only:
    they may be a column's own bitmaps)."""
    if not parts:
        return BitMap()
    if len(parts) == 1:
        return parts[0]
    return BitMap.union(*parts)


def bitmap_bytes(bm: BitMap) -> int:
    s = bm.get_statistics()
    return int(s["n_bytes_array_containers"] + s["n_bytes_run_containers"] + s["n_bytes_bitset_containers"]) + 64


class ValueIndex:
    """Rows (profile, key) sorted by key, with bitmaps of the profiles per key bucket.

    Buckets are contiguous row ranges; bucket bitmaps are unioned four at a time into coarser
    levels, so any run of buckets is the union of a few bitmaps. A heavy key (more rows than a
    bucket) gets a bucket of its own, so a comparison never has to sort a big slice.
    ``dictionary`` (text indexes): the distinct texts; keys are their positions.
    """

    def __init__(self, keys: np.ndarray, ids: np.ndarray, *, dictionary: pa.Array | None = None) -> None:
        self.keys = keys
        self.ids = np.ascontiguousarray(ids, dtype=np.uint32)
        self.dictionary = dictionary
        n = len(keys)
        self.bounds = _bucket_bounds(keys)
        level = [bitmap_of(np.sort(self.ids[a:b])) for a, b in zip(self.bounds[:-1], self.bounds[1:], strict=True)]
        self.levels = [level]
        while len(level) > _FANOUT:
            level = [BitMap.union(*level[i : i + _FANOUT]) for i in range(0, len(level), _FANOUT)]
            self.levels.append(level)
        #: Profiles with at least one row.
        self.present = union(level)
        #: At most one row per profile (then a wide range is cheaper as present minus the rest).
        self.single = len(self.present) == n
        #: Text indexes: the rows of code c are offsets[c] … offsets[c + 1].
        self.offsets = (
            None
            if dictionary is None
            else np.searchsorted(keys, np.arange(len(dictionary) + 1, dtype=keys.dtype), side="left")
        )

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        total = self.keys.nbytes + self.ids.nbytes + self.bounds.nbytes + bitmap_bytes(self.present)
        total += 0 if self.offsets is None else self.offsets.nbytes
        total += sum(bitmap_bytes(bm) for level in self.levels for bm in level)
        if self.dictionary is not None:
            total += self.dictionary.nbytes
        return total

    # -- positions ------------------------------------------------------------------------------
    def span(
        self, low: float | int | None, high: float | int | None, *, low_open: bool = False, high_open: bool = False
    ) -> tuple[int, int]:
        """Rows [p0, p1) whose key is in the range (None = unbounded on that side)."""
        keys = self.keys
        p0 = 0 if low is None else int(np.searchsorted(keys, low, side="right" if low_open else "left"))
        p1 = len(keys) if high is None else int(np.searchsorted(keys, high, side="left" if high_open else "right"))
        return p0, max(p0, p1)

    def code_spans(self, codes: np.ndarray) -> list[tuple[int, int]]:
        """Row ranges of the given keys, adjacent ones merged."""
        codes = np.unique(codes)
        if not len(codes):
            return []
        if self.offsets is not None:
            starts, ends = self.offsets[codes], self.offsets[codes + 1]
        else:  # (in the keys' own type: a wider one would convert every key first)
            starts = np.searchsorted(self.keys, codes.astype(self.keys.dtype), side="left")
            ends = np.searchsorted(self.keys, codes.astype(self.keys.dtype), side="right")
        out: list[tuple[int, int]] = []
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            if s == e:
                continue
            if out and out[-1][1] == s:
                out[-1] = (out[-1][0], e)
            else:
                out.append((s, e))
        return out

    # -- profiles -------------------------------------------------------------------------------
    def profiles(self, spans: Sequence[tuple[int, int]]) -> BitMap:
        """The profiles with a row in any of the row ranges (read-only: may be one of the index's bitmaps)."""
        spans = [(a, b) for a, b in spans if a < b]
        n = len(self.keys)
        if not spans:
            return BitMap()
        if len(spans) > 64:
            return self._gather(spans)
        covered = sum(b - a for a, b in spans)
        if self.single and covered > n // 2:
            # Fewer rows outside: everyone with a row, less the profiles of the gaps.
            gaps, at = [], 0
            for a, b in sorted(spans):
                gaps.append((at, a))
                at = b
            gaps.append((at, n))
            rest = [bm for a, b in gaps if a < b for bm in self._parts(a, b)]
            return self.present - union(rest) if rest else self.present
        return union([bm for a, b in spans for bm in self._parts(a, b)])

    def _gather(self, spans: Sequence[tuple[int, int]]) -> BitMap:
        """Many small ranges (a text pattern matching many values): pick the rows, sort, build."""
        picked = np.concatenate([self.ids[a:b] for a, b in spans])
        return bitmap_of(np.unique(picked))

    def _parts(self, p0: int, p1: int) -> list[BitMap]:
        """Bitmaps whose union is the profiles of rows [p0, p1)."""
        b = self.bounds
        first = int(np.searchsorted(b, p0, side="left"))  # first bucket starting at or after p0
        last = int(np.searchsorted(b, p1, side="right")) - 1  # buckets [first, last) lie inside
        if first >= last:
            return [bitmap_of(np.sort(self.ids[p0:p1]))]
        out = []
        if p0 < b[first]:
            out.append(bitmap_of(np.sort(self.ids[p0 : b[first]])))
        out.extend(self._tree(first, last))
        if b[last] < p1:
            out.append(bitmap_of(np.sort(self.ids[b[last] : p1])))
        return out

    def _tree(self, a: int, z: int) -> list[BitMap]:
        """The fewest level bitmaps covering buckets [a, z)."""
        out: list[BitMap] = []
        depth = 0
        while a < z:
            level = self.levels[depth]
            if depth + 1 == len(self.levels):
                out.extend(level[a:z])
                break
            while a < z and a % _FANOUT:
                out.append(level[a])
                a += 1
            while a < z and z % _FANOUT:
                z -= 1
                out.append(level[z])
            a //= _FANOUT
            z //= _FANOUT
            depth += 1
        return out

    # -- text -----------------------------------------------------------------------------------
    def codes_of(self, texts: Sequence[str]) -> np.ndarray:
        """The codes of those texts that occur (a text index)."""
        assert self.dictionary is not None
        found = pc.index_in(pa.array(list(texts), pa.string()), value_set=self.dictionary)
        return np.asarray(found.drop_null().to_numpy(zero_copy_only=False), dtype=np.int64)

    def codes_matching(self, op: Literal["contains", "starts_with", "regex"], pattern: str) -> np.ndarray:
        """The codes of the texts that contain / start with / match (RE2, searching) ``pattern``."""
        assert self.dictionary is not None
        if op == "contains":
            hit = pc.match_substring(self.dictionary, pattern)
        elif op == "starts_with":
            hit = pc.starts_with(self.dictionary, pattern)
        else:  # DuckDB's own regexp_matches, as the SQL runs it
            con = duckdb.connect()
            try:
                con.register("texts", pa.table({"v": self.dictionary}))
                hit = con.sql("SELECT regexp_matches(v, $p) AS hit FROM texts", params={"p": pattern}).to_arrow_table()
                hit = hit.column(0)
            finally:
                con.close()
        return np.flatnonzero(hit.to_numpy(zero_copy_only=False))


def _bucket_bounds(keys: np.ndarray) -> np.ndarray:
    """Bucket boundaries (row positions, first 0, last n) that fall between distinct keys."""
    n = len(keys)
    if n == 0:
        return np.zeros(1, dtype=np.int64)
    run_starts = np.concatenate(([0], np.flatnonzero(keys[1:] != keys[:-1]) + 1)).astype(np.int64)
    if len(run_starts) <= _DISTINCT_BUCKETS:
        return np.append(run_starts, n)
    size = max(_MIN_BUCKET_ROWS, -(-n // _BUCKETS))
    # Even row positions moved back to the start of their key's run …
    targets = np.arange(0, n, size, dtype=np.int64)
    snapped = run_starts[np.searchsorted(run_starts, targets, side="right") - 1]
    # … and both ends of every run longer than a bucket.
    run_ends = np.append(run_starts[1:], n)
    heavy = (run_ends - run_starts) >= size
    return np.unique(np.concatenate((snapped, run_starts[heavy], run_ends[heavy], [0, n])))


Column = BitMap | ValueIndex


@dataclass(frozen=True)
class ColumnSpec:
    """What to read: a statement and its parameters, and the tables its rows come from.

    ``shape="set"``: rows ``(profile_idx)`` become a :class:`BitMap`. ``shape="values"``: rows
    ``(idx, v)`` (any order) become a :class:`ValueIndex`, keyed by the type of ``v``
    (VARCHAR: codes into a dictionary; TIMESTAMP: microseconds; BOOLEAN: 0/1; numbers).
    Two equal specs are one column; ``label`` only names it for people.
    """

    sql: str
    params: tuple[tuple[str, str | int | float], ...] = ()
    shape: Literal["set", "values"] = "values"
    tables: tuple[str, ...] = ("profiles",)
    label: str = field(default="", compare=False)


def load(cur: duckdb.DuckDBPyConnection, spec: ColumnSpec) -> Column:
    """Read one column from the store (values are sorted here: numpy sorts faster than ORDER BY
    on long texts, and text needs only its codes in order)."""
    got = cur.sql(spec.sql, params=dict(spec.params)).to_arrow_table()
    if spec.shape == "set":
        return bitmap_of(np.sort(got.column(0).to_numpy().astype(np.uint32)))
    ids = got.column(0).to_numpy().astype(np.uint32)
    v = got.column(1).combine_chunks()
    dictionary = None
    if pa.types.is_string_view(v.type):
        v = v.cast(pa.large_string())
    if pa.types.is_string(v.type) or pa.types.is_large_string(v.type):
        encoded = pc.dictionary_encode(v)
        keys = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32)
        dictionary = encoded.dictionary
    elif pa.types.is_timestamp(v.type):
        keys = v.cast(pa.timestamp("us")).cast(pa.int64()).to_numpy()
    elif pa.types.is_boolean(v.type):
        keys = v.to_numpy(zero_copy_only=False).astype(np.int8)
    elif pa.types.is_integer(v.type):
        keys = v.to_numpy(zero_copy_only=False).astype(np.int64)
    else:
        keys = v.to_numpy(zero_copy_only=False).astype(np.float64)  # NaN sorts last, as DuckDB orders it
    order = np.argsort(keys, kind="stable")
    return ValueIndex(keys[order], ids[order], dictionary=dictionary)


def column_bytes(column: Column) -> int:
    return bitmap_bytes(column) if isinstance(column, BitMap) else column.nbytes


@dataclass
class _Entry:
    column: Column
    generations: dict[str, int]
    nbytes: int


class ProfileColumns:
    """The in-process cache of profile columns of one analytic store (thread-safe)."""

    def __init__(self, store: AnalyticStore, *, budget_bytes: int = DEFAULT_BUDGET) -> None:
        self.store = store
        self.budget_bytes = budget_bytes
        self._entries: OrderedDict[ColumnSpec, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[ColumnSpec, threading.Lock] = {}
        self.loads = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(e.nbytes for e in self._entries.values())

    def held(self) -> list[ColumnSpec]:
        """The columns held, least recently used first."""
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def get(self, specs: Iterable[ColumnSpec]) -> dict[ColumnSpec, Column]:
        """The columns, current: read now when not held or stale."""
        wanted = list(dict.fromkeys(specs))
        out = {spec: self._current(spec) for spec in wanted}
        self._evict(keep=set(wanted))
        return out

    def _fresh(self, entry: _Entry | None) -> bool:
        return entry is not None and all(self.store.generation(t) == g for t, g in entry.generations.items())

    def _current(self, key: ColumnSpec) -> Column:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._fresh(entry):
                self._entries.move_to_end(key)
                return entry.column
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:  # one reader loads a column; others wanting it wait for that
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None and self._fresh(entry):
                    self._entries.move_to_end(key)
                    return entry.column
            # Generations first: a change during the read leaves the column stale, never wrongly current.
            generations = {t: self.store.generation(t) for t in key.tables}
            cur = self.store.cursor()
            try:
                column = load(cur, key)
            finally:
                cur.close()
            self.loads += 1
            with self._lock:
                self._entries[key] = _Entry(column, generations, column_bytes(column))
                self._entries.move_to_end(key)
            return column

    def _evict(self, *, keep: set[ColumnSpec]) -> None:
        with self._lock:
            total = sum(e.nbytes for e in self._entries.values())
            for key in list(self._entries):
                if total <= self.budget_bytes:
                    break
                if key in keep:
                    continue
                total -= self._entries.pop(key).nbytes
