"""Write-ahead-log records round-trip in both formats."""

from __future__ import annotations

import pyarrow as pa

from tessera.domain.messages import EVENT_COLUMNS
from tessera.services import wal_records

ROW = ("m1", 3, "track", "Product Viewed", "u1", None, None, None, 10, 9, 11, 12, 299.0, "CNY", "O1", "SKU1",
       "冲锋衣", None, None, None, "wechat", None, "双11", None, None, '{"a":1}', None, None)  # fmt: skip
DEAD = [(12, 3, "m2", 1, "type", "unknown", None)]


def test_both_formats_round_trip() -> None:
    assert len(ROW) == len(EVENT_COLUMNS)
    for fmt in (1, 2):
        got, dead = wal_records.decode(wal_records.encode([ROW, ROW], DEAD, fmt=fmt))
        table = got if isinstance(got, pa.RecordBatch) else wal_records.rows_to_batch(got)
        assert table.num_rows == 2 and table.schema == wal_records.ROW_SCHEMA
        assert tuple(table.to_pylist()[0].values()) == ROW
        assert [tuple(d) for d in dead] == DEAD


def test_records_without_rows() -> None:
    got, dead = wal_records.decode(wal_records.encode([], DEAD))
    assert len(got) == 0 and len(dead) == 1
