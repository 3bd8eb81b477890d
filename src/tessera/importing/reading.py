"""Reading a file into DuckDB: format, encoding, and the raw relation ``_imp_raw``.

* CSV (also ``.tsv``/``.txt``) is read with every column as VARCHAR; lines DuckDB cannot split
  (too many / too few columns, a broken quote) are kept aside as *structural* rejects with their
  line numbers. A UTF-8 byte-order mark is skipped.
* JSON lines (``.jsonl``/``.ndjson``, or ``.json`` holding one object per line) and JSON arrays
  (``.json`` starting with ``[``) are read with every key as a JSON value.
* Parquet keeps its types; the parse step casts only what needs casting.

Encodings: the file is UTF-8 unless told otherwise. A file that is not (a GBK export from a
Chinese ERP, say) fails with the line and a suggestion (``--encoding gbk``); with ``encoding=``
it is transcoded, streaming, into a UTF-8 temp file first. UTF-16 with a byte-order mark (Excel's
"Unicode text") is recognised on its own.
"""

from __future__ import annotations

import codecs
import gzip
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal, cast

import duckdb

from tessera.importing.parsing import RAW
from tessera.importing.report import ImportUsageError

FORMATS = ("csv", "tsv", "jsonl", "json", "parquet")
_EXTENSIONS = {
    ".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".txt": "csv",
    ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json",
    ".parquet": "parquet", ".pq": "parquet",
}  # fmt: skip
_CHUNK = 1 << 20
#: How much of a UTF-8 file is checked before DuckDB reads it (the rest is checked as it is read).
_PRECHECK_BYTES = 1 << 20
_ALIASES = {"gbk": "gb18030", "gb2312": "gb18030", "cp936": "gb18030"}


class FileProblem(ValueError):
    """The file cannot be read as asked; the message says where and what to do."""


@dataclass
class PreparedFile:
    """The file as DuckDB will read it (a transcoded temp copy when the encoding needed one)."""

    original: Path
    path: Path
    file_format: str
    encoding: str
    temp: Path | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def unit(self) -> str:
        """What a row number counts: file lines (CSV, JSON lines), records (JSON array), rows (Parquet)."""
        return {"parquet": "row", "json": "record"}.get(self.file_format, "line")

    @property
    def first_line(self) -> int:
        """The number of the first data row in :attr:`unit` (CSV: line 2, after the header)."""
        return 2 if self.file_format in ("csv", "tsv") else 1

    def cleanup(self) -> None:
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
            self.temp = None


def open_bytes(path: Path) -> IO[bytes]:
    """The file's bytes (decompressed when it ends in ``.gz``)."""
    if path.suffix.lower() == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def _stem_suffix(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return os.path.splitext(name)[1]


def detect_format(path: Path, file_format: str | None = None) -> str:
    if file_format:
        fmt = file_format.strip().lower().replace("ndjson", "jsonl")
        if fmt not in FORMATS:
            raise ImportUsageError("format", f"unknown format {file_format!r}; use one of {', '.join(FORMATS)}")
        return fmt
    suffix = _stem_suffix(path)
    if suffix in (".xlsx", ".xls"):
        raise ImportUsageError("format", "Excel workbooks are not read directly; save the sheet as CSV UTF-8")
    guessed = _EXTENSIONS.get(suffix)
    if guessed is None:
        raise ImportUsageError(
            "format", f"cannot tell the format of {path.name!r} from its extension; pass --format csv|jsonl|parquet"
        )
    return guessed


def normalise_encoding(encoding: str) -> str:
    try:
        name = codecs.lookup(encoding.strip()).name
    except LookupError:
        raise ImportUsageError(
            "encoding", f"unknown encoding {encoding!r} (try utf-8, gbk, gb18030, utf-16, latin-1)"
        ) from None
    return _ALIASES.get(name, name)


def guess_encoding(sample: bytes) -> str:
    """The encoding to suggest for bytes that are not UTF-8."""
    if sample.count(0) > len(sample) // 4:
        return "utf-16"
    for candidate, suggest in (("gbk", "gbk"), ("gb18030", "gb18030"), ("big5", "big5")):
        try:
            sample.decode(candidate)
        except UnicodeDecodeError:
            continue
        return suggest
    return "latin-1"


def find_invalid_utf8(path: Path, limit: int | None = None) -> tuple[int, bytes] | None:
    """(line number, the line's bytes) of the first byte sequence that is not UTF-8, else None."""
    line = 1
    pending = b""
    read = 0
    with open_bytes(path) as f:
        while True:
            chunk = f.read(_CHUNK)
            data = pending + chunk
            if not data:
                return None
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if chunk and exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
                    good = data[: exc.start]
                    line += good.count(b"\n")
                    pending = data[exc.start :]
                else:
                    line += data.count(b"\n", 0, exc.start)
                    start = data.rfind(b"\n", 0, exc.start) + 1
                    end = data.find(b"\n", exc.start)
                    return line, data[start : end if end >= 0 else len(data)]
            else:
                line += data.count(b"\n")
                pending = b""
            if not chunk:
                return None
            read += len(chunk)
            if limit is not None and read >= limit:
                return None


def encoding_problem(path: Path, name: str, found: tuple[int, bytes]) -> FileProblem:
    line, sample = found
    guess = guess_encoding(sample)
    return FileProblem(
        f"line {line} of {name} is not valid UTF-8 (it starts {sample[:12]!r}); the file looks {guess}-encoded — "
        f"import it again with --encoding {guess}"
    )


def _transcode(src: Path, encoding: str, suffix: str, work_dir: Path | None) -> Path:
    fd, name = tempfile.mkstemp(prefix="tessera-import-", suffix=suffix, dir=work_dir)
    dst = Path(name)
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    line = 1
    try:
        with open_bytes(src) as fin, os.fdopen(fd, "w", encoding="utf-8", newline="") as fout:
            while True:
                chunk = fin.read(_CHUNK)
                try:
                    text = decoder.decode(chunk, final=not chunk)
                except UnicodeDecodeError as exc:
                    at = line + chunk[: max(exc.start, 0)].count(b"\n")
                    raise FileProblem(
                        f"line {at} of {src.name} is not valid {encoding} (near {chunk[exc.start : exc.start + 8]!r}); "
                        "check --encoding"
                    ) from None
                if text:
                    line += text.count("\n")
                    fout.write(text)
                if not chunk:
                    break
    except BaseException:
        dst.unlink(missing_ok=True)
        raise
    return dst


def prepare(path: Path, *, file_format: str | None, encoding: str, work_dir: Path | None = None) -> PreparedFile:
    """Check the file and its encoding; transcode to UTF-8 when needed."""
    if not path.is_file():
        raise ImportUsageError("file", f"no such file: {path}")
    fmt = detect_format(path, file_format)
    enc = normalise_encoding(encoding)
    prepared = PreparedFile(original=path, path=path, file_format=fmt, encoding=enc)
    if path.stat().st_size == 0:
        raise FileProblem(f"{path.name} is empty")
    if fmt == "parquet":
        return prepared
    with open_bytes(path) as f:
        head = f.read(4)
    if enc in ("utf-8", "utf-8-sig") and head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        enc = prepared.encoding = "utf-16"
        prepared.notes.append("the file is UTF-16 (it starts with a byte-order mark); read as such")
    if enc in ("utf-8", "utf-8-sig"):
        found = find_invalid_utf8(path, limit=_PRECHECK_BYTES)
        if found is not None:
            raise encoding_problem(path, path.name, found)
        if fmt in ("jsonl", "json") and head.startswith(codecs.BOM_UTF8):
            enc = "utf-8-sig"  # DuckDB's JSON reader refuses a byte-order mark: drop it in a copy
        else:
            return prepared
    suffix = ".jsonl" if fmt in ("jsonl", "json") else ".csv"
    prepared.temp = prepared.path = _transcode(path, enc, suffix, work_dir)
    return prepared


@dataclass
class RawRelation:
    """The file in DuckDB as the view ``_imp_raw``: its columns and types; after the scan, how many rows
    it gave and which lines the CSV reader could not split."""

    columns: list[str]
    types: dict[str, str]
    rows: int = 0
    #: lines the CSV reader could not split: (line, column or '', reason)
    structural: list[tuple[int, str, str]] = field(default_factory=list)


_DUCKDB_PREFIX = re.compile(r"^[A-Za-z ]*Error: ")


def _duckdb_message(exc: duckdb.Error, prepared: PreparedFile) -> str:
    text = str(exc).strip()
    first = _DUCKDB_PREFIX.sub("", text.splitlines()[0] if text else type(exc).__name__)
    return first.replace(str(prepared.path), prepared.original.name)


@contextmanager
def scanning(prepared: PreparedFile) -> Iterator[None]:
    """Around a statement that reads ``_imp_raw``: DuckDB's reader errors become :class:`FileProblem`."""
    try:
        yield
    except duckdb.Error as exc:
        message = _duckdb_message(exc, prepared)
        if "invalid UTF-8" in message or "not utf-8 encoded" in message:
            found = find_invalid_utf8(prepared.path)
            if found is not None:
                raise encoding_problem(prepared.path, prepared.original.name, found) from None
        raise FileProblem(f"cannot read {prepared.original.name} as {prepared.file_format}: {message}") from None


def open_raw(cur: duckdb.DuckDBPyConnection, prepared: PreparedFile) -> RawRelation:
    """Create the view ``_imp_raw`` over the file on ``cur`` (reading it is left to the parse step, so
    a CSV is scanned once), with its columns and types."""
    fmt = prepared.file_format
    path = str(prepared.path)
    with scanning(prepared):
        if fmt == "parquet":
            rel = cur.read_parquet(path)
        elif fmt in ("csv", "tsv"):
            rel = cur.read_csv(
                path,
                header=True,
                all_varchar=True,
                store_rejects=True,
                rejects_table="_imp_csv_errors",
                rejects_scan="_imp_csv_scans",
                delimiter="\t" if fmt == "tsv" else None,
            )
        else:
            json_format: Literal["newline_delimited", "array"] = "newline_delimited" if fmt == "jsonl" else "array"
            if fmt == "json":
                with open_bytes(prepared.path) as f:
                    if not f.read(4096).lstrip().startswith(b"["):
                        json_format = "newline_delimited"
                        prepared.file_format = "jsonl"
            rel = cur.read_json(path, format=json_format, sample_size=-1, maximum_depth=1)
        cur.register(RAW, rel)  # a temporary view of this cursor only (create_view would persist it)
        described = cur.execute("DESCRIBE _imp_raw").fetchall()
    types = {str(r[0]): str(r[1]) for r in described}
    return RawRelation(columns=list(types), types=types)


def after_scan(cur: duckdb.DuckDBPyConnection, prepared: PreparedFile, raw: RawRelation, rows: int) -> None:
    """Once ``_imp_raw`` was scanned: the row count, and the lines a CSV reader set aside (a line that
    is not UTF-8 fails the whole import — the encoding is wrong, not the line)."""
    raw.rows = rows
    if prepared.file_format not in ("csv", "tsv"):
        return
    errors = cur.execute(
        "SELECT line, coalesce(column_name, ''), CAST(error_type AS VARCHAR), csv_line, error_message "
        "FROM _imp_csv_errors ORDER BY line"
    ).fetchall()
    for line, column, kind, csv_line, message in errors:
        if kind == "INVALID ENCODING":
            located = find_invalid_utf8(prepared.path) or (int(line), (csv_line or "").encode())
            raise encoding_problem(prepared.path, prepared.original.name, located)
        whole_line = kind in ("TOO MANY COLUMNS", "MISSING COLUMNS")
        raw.structural.append((int(line), "" if whole_line else column, f"{message.rstrip('.')}: {csv_line[:200]}"))
