"""The write-ahead log: records survive, a torn tail is ignored, new writes never follow a torn record."""

from __future__ import annotations

import threading
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.stores import wal


def _append_all(writer: wal.WalWriter, payloads: list[bytes]) -> None:
    done = threading.Semaphore(0)
    errors: list[BaseException] = []

    def cb(err: BaseException | None) -> None:
        if err is not None:
            errors.append(err)
        done.release()

    for p in payloads:
        writer.append(p, cb)
    for _ in payloads:
        assert done.acquire(timeout=10)
    assert not errors


def test_records_round_trip_across_segments(tmp_path: Path) -> None:
    w = wal.WalWriter(tmp_path, segment_bytes=1000, fsync=True)
    payloads = [f"记录 {i}".encode() * (i % 7 + 1) for i in range(300)]
    for i in range(0, 300, 30):  # ten group commits; the segment rolls once it passes 1,000 bytes
        _append_all(w, payloads[i : i + 30])
    w.close()
    assert len(wal.list_segments(tmp_path)) > 1
    got = [body for _, body in wal.read_records(tmp_path, wal.Position(0, 0), None)]
    assert got == payloads


def test_reading_resumes_after_a_checkpoint(tmp_path: Path) -> None:
    w = wal.WalWriter(tmp_path, segment_bytes=1 << 20, fsync=False)
    _append_all(w, [b"a", b"b", b"c"])
    w.close()
    records = list(wal.read_records(tmp_path, wal.Position(0, 0), None))
    after_first = records[0][0]
    assert [b for _, b in wal.read_records(tmp_path, after_first, None)] == [b"b", b"c"]
    assert wal.backlog_bytes(tmp_path, after_first) > 0
    assert wal.backlog_bytes(tmp_path, records[-1][0]) == 0


def test_torn_tail_is_ignored_and_a_restart_writes_to_a_new_segment(tmp_path: Path) -> None:
    w = wal.WalWriter(tmp_path, segment_bytes=1 << 20, fsync=True)
    _append_all(w, [b"one", b"two"])
    w.close()
    seg = wal.segment_path(tmp_path, wal.list_segments(tmp_path)[-1])
    with open(seg, "ab") as f:  # a crash in the middle of a write: header and half a body
        f.write(wal.HEADER.pack(wal.MAGIC, 100, 0) + b"half")
    w2 = wal.WalWriter(tmp_path, segment_bytes=1 << 20, fsync=True)
    _append_all(w2, [b"three"])
    w2.close()
    assert [b for _, b in wal.read_records(tmp_path, wal.Position(0, 0), None)] == [b"one", b"two", b"three"]


def test_corrupted_record_stops_its_segment(tmp_path: Path) -> None:
    w = wal.WalWriter(tmp_path, segment_bytes=1 << 20, fsync=False)
    _append_all(w, [b"good", b"flipped"])
    w.close()
    seg = wal.segment_path(tmp_path, 1)
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF
    seg.write_bytes(bytes(data))
    assert [b for _, b in wal.read_records(tmp_path, wal.Position(0, 0), None)] == [b"good"]


def test_segments_before_a_checkpoint_are_removed(tmp_path: Path) -> None:
    w = wal.WalWriter(tmp_path, segment_bytes=10, fsync=False)
    for _ in range(5):
        _append_all(w, [b"x" * 20])
    w.close()
    last = list(wal.read_records(tmp_path, wal.Position(0, 0), None))[-1][0]
    assert wal.remove_segments_before(tmp_path, last) >= 4
    assert wal.list_segments(tmp_path)[0] == last.segment


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=40), st.integers(1, 400))
def test_any_prefix_cut_yields_a_prefix_of_the_records(payloads: list[bytes], cut: int) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        w = wal.WalWriter(directory, segment_bytes=1 << 20, fsync=False)
        _append_all(w, payloads)
        w.close()
        seg = wal.segment_path(directory, 1)
        data = seg.read_bytes()
        seg.write_bytes(data[: max(0, len(data) - cut)])
        got = [b for _, b in wal.read_records(directory, wal.Position(0, 0), None)]
        assert got == payloads[: len(got)]
