"""Vectorised column builders for the demo generator (numpy in, Arrow out).

Everything here works on whole columns: money from integer cents, random tokens and ids, string
concatenation, JSON objects assembled from per-key fragments, and a Parquet sink whose bytes depend
only on the rows (no generation time, fixed writer options) so a seed always gives the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

MONEY = pa.decimal128(18, 2)
TS = pa.timestamp("us")
#: Low-cardinality text columns are written dictionary-encoded (DuckDB reads them as VARCHAR).
DICT = pa.dictionary(pa.int32(), pa.string())
_HEX_UPPER = b"0123456789ABCDEF"
_HEX_LOWER = b"0123456789abcdef"
ALNUM_LOWER = b"abcdefghijklmnopqrstuvwxyz0123456789"
WECHAT_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


def money(cents: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """DECIMAL(18,2) from integer cents, exactly (no float rounding)."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = np.where(cents < 0, -1, 0)
    arr = pa.Array.from_buffers(MONEY, len(cents), [None, pa.py_buffer(words.tobytes())])
    if valid is not None:
        arr = pc.if_else(pa.array(valid), arr, pa.scalar(None, MONEY))
    return arr


def timestamps(micros: np.ndarray) -> pa.Array:
    """A naive UTC ``timestamp[us]`` column from microseconds since the epoch."""
    return pa.array(np.ascontiguousarray(micros, dtype=np.int64), type=pa.int64()).cast(TS)


def _bytes_to_strings(matrix: np.ndarray) -> pa.Array:
    n, width = matrix.shape
    flat = np.ascontiguousarray(matrix, dtype=np.uint8).tobytes()
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(flat)])


def tokens(rng: np.random.Generator, n: int, length: int, alphabet: bytes, prefix: str = "") -> pa.Array:
    """``n`` random ASCII strings: ``prefix`` + ``length`` characters of ``alphabet``."""
    table = np.frombuffer(alphabet, dtype=np.uint8)
    body = table[rng.integers(0, len(table), size=(n, length), dtype=np.uint8)]
    if prefix:
        head = np.broadcast_to(np.frombuffer(prefix.encode(), dtype=np.uint8), (n, len(prefix)))
        body = np.concatenate([head, body], axis=1)
    return _bytes_to_strings(body)


def uuids(rng: np.random.Generator, n: int, *, upper: bool = False) -> pa.Array:
    """uuid4-shaped strings (version and variant nibbles set), from the generator's stream."""
    table = np.frombuffer(_HEX_UPPER if upper else _HEX_LOWER, dtype=np.uint8)
    raw = np.frombuffer(rng.bytes(16 * n), dtype=np.uint8).reshape(n, 16)
    nibbles = np.empty((n, 32), dtype=np.uint8)
    nibbles[:, 0::2] = raw >> 4
    nibbles[:, 1::2] = raw & 15
    nibbles[:, 12] = 4
    nibbles[:, 16] = 8 + (nibbles[:, 16] & 3)
    chars = table[nibbles]
    dash = np.full((n, 1), ord("-"), dtype=np.uint8)
    parts = [chars[:, 0:8], dash, chars[:, 8:12], dash, chars[:, 12:16], dash, chars[:, 16:20], dash, chars[:, 20:]]
    return _bytes_to_strings(np.concatenate(parts, axis=1))


def hex_ids(rng: np.random.Generator, n: int, length: int) -> pa.Array:
    return tokens(rng, n, length, _HEX_LOWER)


def digits(values: np.ndarray, width: int, prefix: str = "") -> pa.Array:
    """Zero-padded decimal strings of non-negative integers, with an optional prefix."""
    text = pc.utf8_lpad(pa.array(np.asarray(values, dtype=np.int64)).cast(pa.string()), width, "0")
    return concat(prefix, text) if prefix else text


def scramble(index: np.ndarray, modulus: int, mult: int, add: int) -> np.ndarray:
    """A bijection of ``[0, modulus)``: distinct indexes give distinct, random-looking numbers."""
    if np.gcd(mult, modulus) != 1:
        raise ValueError("mult must be coprime with modulus")
    idx = np.asarray(index, dtype=np.int64) % modulus
    # (idx * mult) may overflow int64 for big moduli: multiply in two halves.
    lo, hi = mult % 100_000, mult // 100_000
    out = (idx * lo) % modulus
    out = (out + ((idx * hi) % modulus) * 100_000) % modulus
    return (out + add) % modulus


def take(vocab: Sequence[str] | pa.Array, index: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
    """``vocab[index]`` as an Arrow string column; null where ``mask`` is False."""
    arr = vocab if isinstance(vocab, pa.Array) else pa.array(list(vocab), pa.string())
    index = np.asarray(index, dtype=np.int64)
    if mask is None:
        return arr.take(pa.array(index))
    mask = np.asarray(mask, dtype=bool)
    idx = pa.array(np.where(mask, index, 0), mask=~mask)
    return arr.take(idx)


def codes(vocab: Sequence[str], index: np.ndarray, mask: np.ndarray | None = None) -> pa.DictionaryArray:
    """``vocab[index]`` as a dictionary-encoded column (no string copies); null where ``mask`` is False."""
    index = np.asarray(index, dtype=np.int32)
    if mask is None:
        indices = pa.array(index, pa.int32())
    else:
        mask = np.asarray(mask, dtype=bool)
        indices = pa.array(np.where(mask, index, 0).astype(np.int32), pa.int32(), mask=~mask)
    return pa.DictionaryArray.from_arrays(indices, pa.array(list(vocab), pa.string()))


def where(mask: np.ndarray, values: pa.Array, otherwise: pa.Array | None = None) -> pa.Array:
    """``values`` where ``mask`` is True, else ``otherwise`` (null by default)."""
    other = otherwise if otherwise is not None else pa.scalar(None, values.type)
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), values, other)


def concat(*parts: str | pa.Array) -> pa.Array:
    """Element-wise string concatenation; null if any part is null."""
    args = [pa.scalar(p, pa.string()) if isinstance(p, str) else p for p in parts]
    return pc.binary_join_element_wise(*args, "")


def nulls(n: int, typ: pa.DataType | None = None) -> pa.Array:
    return pa.nulls(n, typ or pa.string())


# -- JSON ----------------------------------------------------------------------------------------
def json_text(values: pa.Array, *, escape: bool = False) -> pa.Array:
    """A JSON string literal per value; null stays null.

    The generator's vocabularies hold no quote, backslash or control character (a test checks), so
    escaping is only done when asked for (free text).
    """
    v = values if values.type == pa.string() else values.cast(pa.string())
    if escape:
        v = pc.replace_substring(v, "\\", "\\\\")
        v = pc.replace_substring(v, '"', '\\"')
    return concat('"', v, '"')


def json_raw(values: pa.Array) -> pa.Array:
    """Numbers / booleans / nested JSON as they are (cast to text)."""
    if pa.types.is_boolean(values.type):
        return pc.if_else(values, pa.scalar("true"), pa.scalar("false"))
    return values if values.type == pa.string() else values.cast(pa.string())


def json_object(n: int, fields: Sequence[tuple[str, pa.Array | None]]) -> pa.Array:
    """``{"k": v, …}`` per row from JSON fragments (``json_text`` / ``json_raw``); null values are left out,
    and a row without any member is null."""
    pieces = []
    for key, fragment in fields:
        if fragment is None:
            continue
        pieces.append(concat(f'"{key}":', fragment))
    if not pieces:
        return pa.nulls(n, pa.string())
    # A never-null first input: binary_join_element_wise with null_handling="skip" drops rows whose
    # inputs are all null. "{" joined with "," gives "{,a,b" (or "{"); the first comma is cut.
    joined = pc.binary_join_element_wise(pa.array(["{"] * n, pa.string()), *pieces, ",", null_handling="skip")
    out = concat(pc.utf8_replace_slice(joined, 0, 2, "{"), "}")
    # An object without members is written as null (importers read '{}' and null alike).
    return pc.if_else(pc.equal(out, "{}"), pa.scalar(None, pa.string()), out)


def json_list(values: pa.Array, offsets: np.ndarray) -> pa.Array:
    """Join consecutive JSON fragments ``values[offsets[i]:offsets[i+1]]`` into ``[a,b,…]`` per row."""
    lists = pa.ListArray.from_arrays(pa.array(np.asarray(offsets, dtype=np.int32)), values)
    return concat("[", pc.binary_join(lists, ","), "]")


# -- random helpers ------------------------------------------------------------------------------
def categorical(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows × k) weight matrix (rows need not be normalised)."""
    w = np.asarray(weights, dtype=np.float64)
    cum = np.cumsum(w, axis=1)
    total = cum[:, -1:]
    u = rng.random((w.shape[0], 1)) * total
    out = (u >= cum).sum(axis=1)
    return np.minimum(out, w.shape[1] - 1)


def pick(rng: np.random.Generator, n: int, weights: Sequence[float]) -> np.ndarray:
    p = np.asarray(weights, dtype=np.float64)
    return rng.choice(len(p), size=n, p=p / p.sum())


# -- Parquet ---------------------------------------------------------------------------------------
class ParquetSink:
    """Writes a Parquet file row group by row group, with options that make the bytes reproducible."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.rows = 0
        self._writer = pq.ParquetWriter(
            str(path),
            schema,
            compression="zstd",
            compression_level=3,
            use_dictionary=True,
            write_statistics=True,
            version="2.6",
        )

    def write(self, table: pa.Table) -> None:
        table = table.select(self.schema.names).cast(self.schema)
        if table.num_rows:
            self._writer.write_table(table, row_group_size=256 * 1024)
            self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()


def write_table(path: Path, table: pa.Table, schema: pa.Schema) -> int:
    sink = ParquetSink(path, schema)
    try:
        sink.write(table)
    finally:
        sink.close()
    return sink.rows
