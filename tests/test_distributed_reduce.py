"""The torch adapters' cross-rank helpers (wattwise._distributed), without a process group."""

from __future__ import annotations

from typing import Any

import pytest

from wattwise import _distributed
from wattwise.errors import MeterUnavailableError
from wattwise.records import PhaseRecord


def _rec(joules: float, samples: int) -> PhaseRecord:
    return PhaseRecord.from_sums("train", 0, joules=joules, seconds=2.0, samples=samples,
                                 batches=1, joules_by_domain={"cpu:package-0": joules},
                                 estimated=False)


def test_one_process_passes_through() -> None:
    rec = _rec(4.0, 2)
    assert _distributed.reduce_phase(rec, True, 9.0, 1) == (rec, 9.0)


def test_ranks_sum_records_and_projections(monkeypatch: pytest.MonkeyPatch) -> None:
    ranks = [(_rec(4.0, 2), True, 9.0), (_rec(0.0, 3), False, None), (_rec(2.0, 1), True, 3.0)]
    monkeypatch.setattr(_distributed, "all_gather", lambda obj: ranks)
    rec, projected = _distributed.reduce_phase(ranks[0][0], True, 9.0, 3)
    assert rec is not None and rec.joules == pytest.approx(6.0) and rec.samples == 6
    assert projected == pytest.approx(12.0)
    monkeypatch.setattr(_distributed, "all_gather", lambda obj: [(None, False, None)] * 2)
    assert _distributed.reduce_phase(None, False, None, 2) == (None, None)


class _Tracker:
    def __init__(self, fail: bool) -> None:
        self.fail, self.begun = fail, False

    def begin_stage(self, stage: str, **kw: Any) -> None:
        if self.fail:
            raise MeterUnavailableError("rapl: no powercap folder")
        self.begun = True


def test_a_meter_failing_on_another_rank_stops_this_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_distributed, "all_gather", lambda obj: [obj, "rank 1: rapl failed"])
    t = _Tracker(fail=False)
    with pytest.raises(MeterUnavailableError, match="rank 1: rapl failed"):
        _distributed.begin_stage(t, "fit", {}, None, 2)
    assert t.begun
    with pytest.raises(MeterUnavailableError, match="no powercap"):
        _distributed.begin_stage(_Tracker(fail=True), "fit", {}, None, 2)
