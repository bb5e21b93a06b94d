"""Tests of wattwise.summary: the coalescing SummaryFile writer, file names, read_summary."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from wattwise.accounting import RecordContext
from wattwise.errors import ConfigurationError
from wattwise.records import EpochRecord, PhaseRecord
from wattwise.summary import RunSnapshot, SummaryFile, read_summary, summary_file_path


def epoch_record(epoch: int, joules: float) -> EpochRecord:
    rec = PhaseRecord.from_sums("train", epoch, joules=joules, joules_by_domain={"gpu:0": joules},
                                seconds=1.0, samples=4, batches=1, estimated=False)
    return EpochRecord(epoch=epoch, phases={"train": rec}, joules=joules, seconds=1.0)


def snapshot(n: int, head: dict[str, Any] | None = None) -> RunSnapshot:
    """A run snapshot with n epochs (epoch i: i J) and duration_s = n."""
    epochs = [epoch_record(i, float(i)) for i in range(n)]
    return RunSnapshot(
        head={"schema_version": 2, "run_name": "t"} if head is None else head,
        status="running", error=None, finished_at=None, duration_s=float(n),
        ctx=RecordContext(periods={"gpu:0": 0.0}), stages=(), epochs=epochs, n_epochs=n,
        advice=None,
    )


class CountingFile(SummaryFile):
    """A SummaryFile that counts its writes (and can be slowed down)."""

    def __init__(self, *args: Any, delay_s: float = 0.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writes: list[int] = []
        self.threads: set[str] = set()
        self.delay_s = delay_s

    def _write(self, snap: RunSnapshot) -> None:
        time.sleep(self.delay_s)
        super()._write(snap)
        self.writes.append(snap.n_epochs)
        self.threads.add(threading.current_thread().name)


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """Exceptions that escaped any thread during the test."""
    caught: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: caught.append(args.exc_value))
    return caught


def test_many_submits_coalesce_into_few_writes(tmp_path: Path,
                                               thread_errors: list[Any]) -> None:
    """50 submits within min_interval_s give at most 2 writes, the last with the newest snapshot."""
    sf = CountingFile(tmp_path / "s.json", min_interval_s=0.5)
    try:
        for n in range(1, 51):
            sf.submit(snapshot(n))
        assert sf.flush(timeout_s=10.0)
        assert 1 <= len(sf.writes) <= 2
        assert sf.writes[-1] == 50
        data = read_summary(tmp_path / "s.json")
        assert data["duration_s"] == 50.0
        assert [e["joules"] for e in data["epochs"]] == [float(i) for i in range(50)]
        assert sf.threads == {"wattwise-summary"} and sf.error is None
    finally:
        sf.close()
    assert thread_errors == []


def test_background_writes_are_min_interval_apart(tmp_path: Path) -> None:
    """Submits spread over 0.6 s with min_interval_s=0.25 give about 3 writes, not 13."""
    sf = CountingFile(tmp_path / "s.json", min_interval_s=0.25)
    try:
        for n in range(1, 14):
            sf.submit(snapshot(n))
            time.sleep(0.05)
        assert sf.flush(timeout_s=10.0)
        assert 2 <= len(sf.writes) <= 5
        assert sf.writes == sorted(sf.writes) and sf.writes[-1] == 13
    finally:
        sf.close()


def test_flush_waits_for_the_newest_snapshot(tmp_path: Path) -> None:
    """A submit right after a write waits out the interval; flush returns once it is on disk."""
    sf = SummaryFile(tmp_path / "s.json", min_interval_s=0.5)
    try:
        sf.submit(snapshot(1))
        assert sf.flush(timeout_s=10.0)
        t0 = time.monotonic()
        assert read_summary(tmp_path / "s.json")["duration_s"] == 1.0
        sf.submit(snapshot(2))
        assert read_summary(tmp_path / "s.json")["duration_s"] == 1.0  # not yet: coalescing
        assert sf.flush(timeout_s=10.0)
        assert read_summary(tmp_path / "s.json")["duration_s"] == 2.0
        assert 0.4 <= time.monotonic() - t0 < 5.0  # flush waited out the interval
    finally:
        sf.close()


def test_flush_times_out_on_a_slow_write(tmp_path: Path) -> None:
    """flush(timeout_s) returns False while a write is still in flight."""
    sf = CountingFile(tmp_path / "s.json", min_interval_s=0.0, delay_s=0.5)
    try:
        sf.submit(snapshot(1))
        assert sf.flush(timeout_s=0.05) is False
        assert sf.flush(timeout_s=10.0) is True
        assert sf.writes == [1]
    finally:
        sf.close()


def test_write_now_is_synchronous(tmp_path: Path) -> None:
    """write_now writes on the calling thread before it returns, replacing a pending submit."""
    sf = CountingFile(tmp_path / "s.json", min_interval_s=10.0)
    try:
        sf.write_now(snapshot(3))
        assert sf.threads == {threading.current_thread().name}
        assert read_summary(tmp_path / "s.json")["duration_s"] == 3.0
        sf.submit(snapshot(4))  # waits ~10 s for its turn ...
        sf.write_now(snapshot(5))  # ... and is replaced by this
        assert read_summary(tmp_path / "s.json")["duration_s"] == 5.0
        assert sf.flush(timeout_s=2.0)
        assert sf.writes == [3, 5]
    finally:
        sf.close()


def test_write_now_raises_on_failure(tmp_path: Path) -> None:
    """write_now raises the OSError of a path that cannot be written."""
    (tmp_path / "file").write_text("not a folder")
    sf = SummaryFile(tmp_path / "file" / "s.json")
    try:
        with pytest.raises(OSError):
            sf.write_now(snapshot(1))
    finally:
        sf.close()


def test_failed_background_write_sets_error_and_keeps_going(
        tmp_path: Path, thread_errors: list[Any]) -> None:
    """A failing background write is stored in .error (the first one), never raised in the thread."""
    sf = SummaryFile(tmp_path / "s.json", min_interval_s=0.0)
    try:
        sf.submit(snapshot(1, head={"schema_version": 2, "bad": float("nan")}))
        assert sf.flush(timeout_s=10.0)
        first = sf.error
        assert isinstance(first, ValueError)
        assert not (tmp_path / "s.json").exists()
        sf.submit(snapshot(2))  # the writer thread is still alive and writes the next one
        assert sf.flush(timeout_s=10.0)
        assert read_summary(tmp_path / "s.json")["duration_s"] == 2.0
        assert sf.error is first
    finally:
        sf.close()
    assert thread_errors == []


def test_close_stops_the_writer_thread(tmp_path: Path) -> None:
    """close() ends the writer thread; later submits write nothing."""
    sf = SummaryFile(tmp_path / "s.json", min_interval_s=0.0)
    sf.submit(snapshot(1))
    assert sf.flush(timeout_s=10.0)
    sf.close()
    assert sf._thread is not None and not sf._thread.is_alive()
    sf.submit(snapshot(2))
    time.sleep(0.05)
    assert read_summary(tmp_path / "s.json")["duration_s"] == 1.0


# file names --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "rank, run_index, name",
    [
        (0, 0, "energy.json"),
        (0, 1, "energy.run2.json"),
        (1, 0, "energy.rank1.json"),
        (1, 1, "energy.run2.rank1.json"),
        (12, 2, "energy.run3.rank12.json"),
    ],
)
def test_summary_file_path_suffixes(rank: int, run_index: int, name: str) -> None:
    """Rank N > 0 adds .rankN, run k > 0 adds .run(k+1), before the extension, same folder."""
    assert summary_file_path(Path("runs") / "energy.json", rank, run_index) == (
        Path("runs") / name)


def test_summary_file_path_without_extension() -> None:
    """A path without extension gets the suffixes at its end."""
    assert summary_file_path("energy", 3, 1) == Path("energy.run2.rank3")


# read_summary ------------------------------------------------------------------------------
def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("version", [1, 2])
def test_read_summary_accepts_schema_1_and_2(tmp_path: Path, version: int) -> None:
    """Schema versions 1 and 2 are read back as they are."""
    data = {"schema_version": version, "status": "completed"}
    assert read_summary(write(tmp_path, data)) == data


@pytest.mark.parametrize("version", [3, "2", 2.0, True, None, [2]])
def test_read_summary_refuses_other_versions(tmp_path: Path, version: object) -> None:
    """A newer or non-integer schema_version (True included) raises ConfigurationError."""
    path = write(tmp_path, {"schema_version": version})
    with pytest.raises(ConfigurationError, match=r"read_summary\(path="):
        read_summary(path)


@pytest.mark.parametrize("version", [0, -1])
def test_read_summary_refuses_versions_below_1(tmp_path: Path, version: int) -> None:
    """schema_version 0 or negative is not a wattwise summary and raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="schema_version"):
        read_summary(write(tmp_path, {"schema_version": version}))


@pytest.mark.parametrize("data", [{}, [1, 2], "summary", 2])
def test_read_summary_refuses_non_summaries(tmp_path: Path, data: object) -> None:
    """JSON that is not a summary object raises ConfigurationError."""
    with pytest.raises(ConfigurationError, match="schema_version"):
        read_summary(write(tmp_path, data))


def test_read_summary_refuses_invalid_json(tmp_path: Path) -> None:
    """A file that is not JSON raises ConfigurationError saying so."""
    path = tmp_path / "s.json"
    path.write_text('{"schema_version": 2,')
    with pytest.raises(ConfigurationError, match="not valid JSON"):
        read_summary(path)


def test_written_file_reads_back(tmp_path: Path) -> None:
    """What SummaryFile writes is a valid schema-2 summary holding every epoch."""
    sf = SummaryFile(tmp_path / "deep" / "s.json")
    try:
        sf.write_now(snapshot(2))
        sf.write_now(snapshot(3))  # the epoch cache grows; earlier epochs are kept
    finally:
        sf.close()
    data = read_summary(tmp_path / "deep" / "s.json")
    assert data["schema_version"] == 2 and data["run_name"] == "t"
    assert [e["epoch"] for e in data["epochs"]] == [0, 1, 2]
    assert data["epochs"][2]["phases"]["train"]["joules_by_domain"] == {"gpu:0": 2.0}
    assert list((tmp_path / "deep").iterdir()) == [tmp_path / "deep" / "s.json"]
