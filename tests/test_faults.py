"""Counters you can trust: resets, implausible jumps, counters going backwards and stalled
counters are unknown (None) for their window - never a number, never 0 J - with one warning,
and measurement goes on (wattwise.meters.faults, MeterSet, Ledger, the tracker, the demo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wattwise import EnergyTracker
from wattwise.accounting import Acc, Ledger, RecordContext, restore_state
from wattwise.config import TrackerConfig
from wattwise.errors import MeterWarning
from wattwise.meters import faults
from wattwise.meters.faults import STALL_DROP_WINDOWS, CounterCheck, max_joules, stall_after_s
from wattwise.meters.rapl import RaplMeter
from wattwise.meterset import Deltas, MeterSet
from wattwise.testing import FakeMeter, fake_rapl_zone, set_rapl_energy

PKG = "cpu:package-0"
HUGE = 3600.0  # RAPL poll interval that keeps the background thread out of the way
RANGE_UJ = 262_143_328_850  # a typical max_energy_range_uj (~262 kJ)


def write_zone(folder: Path, name: str, energy_uj: int) -> Path:
    return fake_rapl_zone(folder, name, energy_uj, RANGE_UJ)


set_energy = set_rapl_energy


@pytest.fixture
def zone(tmp_path: Path) -> Path:
    """A one-package powercap tree at 1 J; returns the package zone folder."""
    return write_zone(tmp_path / "powercap" / "intel-rapl:0", "package-0", 1_000_000)


@pytest.fixture
def rapl(zone: Path) -> Iterator[RaplMeter]:
    with RaplMeter(zone.parent, poll_interval_s=HUGE) as m:
        yield m


class BoundedMeter(FakeMeter):
    """A FakeMeter whose device draws at most ``max_w`` watts and whose counter updates every
    ``period_s`` seconds (so it is held to the plausibility and stall rules)."""

    def __init__(self, domains: tuple[str, ...], max_w: float, period_s: float = 0.0) -> None:
        super().__init__(domains, update_period_s=period_s, name="bounded")
        self._max_w = max_w

    def max_power_w(self, domain: str) -> float | None:
        return self._max_w


@pytest.fixture
def fast_stall(monkeypatch: pytest.MonkeyPatch) -> float:
    """Stalls after 0.1 s instead of 1 s, to keep the tests short; returns a pause longer."""
    monkeypatch.setattr(faults, "STALL_MIN_S", 0.1)
    return 0.12


def meter_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, MeterWarning)]


# the rules -----------------------------------------------------------------------------------
def test_counter_check_verdicts() -> None:
    """Energy, reset (implausible), backwards, quiet, stalled, resumed and dropped."""
    c = CounterCheck(0.0, 0.0, max_power_w=100.0, period_s=0.1, stall_check=True)
    assert c.check(50.0, 1.0) is None  # 50 W: energy
    assert max_joules(100.0, 1.0, 0.1) == pytest.approx(100.0 * (1.0 + 0.2 + faults.SLACK_S))
    f = c.check(50.0 + 300_000.0, 2.0)
    assert f is not None and f.kind == "reset" and "300000 J in 1 s" in f.detail
    assert c.last_joules == 300_050.0  # re-based on the new reading
    assert c.check(300_060.0, 2.5) is None
    f = c.check(300_000.0, 3.0)
    assert f is not None and f.kind == "backwards" and "backwards by 60 J" in f.detail
    for at in (3.05, 3.9):  # still, not yet for a stall: no number, no warning
        q = c.check(300_000.0, at)
        assert q is not None and q.kind == "quiet"
    kinds = [getattr(c.check(300_000.0, 4.1 + 0.4 * i), "kind", None) for i in range(5)]
    assert kinds == ["stalled"] * (STALL_DROP_WINDOWS - 1) + ["dropped"]
    f = c.check(300_001.0, 6.5)
    assert f is not None and f.kind == "resumed"  # holds the stalled time's energy
    assert c.check(300_002.0, 7.0) is None


def test_no_limit_and_no_period_mean_no_check() -> None:
    """Estimates and fakes without a period or a power bound are only checked for going
    backwards (FakeMeter's defaults: its zero windows stay a known 0 J)."""
    c = CounterCheck(0.0, 0.0, max_power_w=None, period_s=0.0, stall_check=True)
    assert c.check(1e12, 0.001) is None
    assert c.check(1e12, 1000.0) is None  # did not move in 1000 s: no claim, no stall
    assert stall_after_s(0.5) == 1.5 and stall_after_s(0.001) == faults.STALL_MIN_S == 1.0


# RAPL: a reset is not a wrap -----------------------------------------------------------------
def test_rapl_reset_is_unknown_not_262_kilojoules(zone: Path, rapl: RaplMeter,
                                                  tmp_path: Path) -> None:
    """Today a counter set back to 0 after 2 J was unwrapped to ~262,142 J with no warning.
    Now: that window is unknown (null in the summary), one warning, the next window measures
    again with the right value."""
    path = tmp_path / "run.json"
    t = EnergyTracker([rapl], summary_path=path)
    t.start()
    t.start_window("train", 0)
    set_energy(zone, 3_000_000)  # +2 J
    assert t.end_window().joules == pytest.approx(2.0)  # type: ignore[union-attr]
    t.end_epoch()
    t.start_window("train", 1)
    set_energy(zone, 0)  # a driver reload sets the counter back to 0 ...
    set_energy(zone, 400_000)  # ... and it counts on: 0.4 J
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rec = t.end_window()
    assert rec is not None and rec.joules is None and rec.joules_by_domain == {PKG: None}
    (msg,) = [m for m in meter_warnings(caught) if "reset" in m]
    assert "fell from 3000000 to" in msg and PKG in msg and "unknown (None)" in msg
    assert rapl.resets == {PKG: 1} and rapl.wraps == {PKG: 0}
    t.end_epoch()
    t.start_window("train", 2)
    set_energy(zone, 2_900_000)  # +2.5 J after the reset
    assert t.end_window().joules == pytest.approx(2.5)  # type: ignore[union-attr]
    t.end_epoch()
    s = t.finish()
    on_disk = json.loads(path.read_text())
    epochs = [e["phases"]["train"] for e in on_disk["epochs"]]
    assert [e["joules"] for e in epochs] == [pytest.approx(2.0), None, pytest.approx(2.5)]
    assert epochs[1]["joules_by_domain"] == {PKG: None} and epochs[1]["watts"] is None
    # a sum with a hole is not the energy: the train total is unknown for that domain
    assert s["totals"]["phases"]["train"]["joules_by_domain"] == {PKG: None}
    assert s["meters"][0]["faults"][PKG]["reset"] == 1
    assert s["meters"][0]["dropped"] is None


def test_rapl_genuine_wrap_still_unwrapped(tmp_path: Path) -> None:
    """A decrease near the top of the range, plausible as a wrap, is still a wrap."""
    z = write_zone(tmp_path / "powercap" / "intel-rapl:0", "package-0", RANGE_UJ - 1_000_000)
    with RaplMeter(z.parent, poll_interval_s=HUGE) as m:
        set_energy(z, 1_500_000)  # 1 J to the top, 1.5 J after the wrap
        r = m.read()
        assert r.joules == {PKG: pytest.approx(2.5)} and r.faults == {}
        assert m.wraps == {PKG: 1} and m.resets == {PKG: 0}


def test_rapl_implausible_jump_is_a_reset(zone: Path, rapl: RaplMeter) -> None:
    """200 kJ in a moment: more than 1000 W can give, so not energy."""
    set_energy(zone, 1_000_000 + 200_000_000_000)
    r = rapl.read()
    assert r.joules == {PKG: 0.0}  # not counted
    assert "jumped from 1000000 to 200001000000" in r.faults[PKG]
    set_energy(zone, 200_001_000_000 + 3_000_000)
    r = rapl.read()
    assert r.joules == {PKG: pytest.approx(3.0)} and r.faults == {}  # faults are reported once


def test_implausible_jump_through_the_tracker() -> None:
    """300 kJ in about a second on a 500 W device: the window is None, the next one counts."""
    m = BoundedMeter(("gpu:0", "gpu:1"), max_w=500.0)
    t = EnergyTracker([m])
    t.start()
    t.start_window("train", 0)
    m.advance({"gpu:0": 300_000.0, "gpu:1": 200.0})
    with pytest.warns(MeterWarning, match=r"'gpu:0'.*moved 300000 J in .* at most 500 W"):
        rec = t.end_window()
    assert rec is not None and rec.joules_by_domain == {"gpu:0": None, "gpu:1": 200.0}
    assert rec.joules == 200.0  # the known domain
    t.start_window("train", 0)
    m.advance(100.0)
    assert t.end_window().joules_by_domain == {"gpu:0": 100.0, "gpu:1": 100.0}  # type: ignore[union-attr]
    t.end_epoch()
    s = t.finish()
    assert s["epochs"][0]["phases"]["train"]["joules_by_domain"] == {"gpu:0": None,
                                                                      "gpu:1": 300.0}


# backwards: that domain only, not the meter --------------------------------------------------
def test_backwards_is_a_reset_of_each_domain_not_a_drop_of_the_meter() -> None:
    bad = FakeMeter(("gpu:0", "gpu:0-mem"), name="bad")
    good = FakeMeter((PKG,), name="good")
    ms = MeterSet(TrackerConfig(meters=[bad, good]))
    periods = ms.first_reading()
    bad.advance(5.0)
    assert sorted(ms.deltas(periods, epoch=0)) == [(PKG, 0.0), ("gpu:0", 5.0), ("gpu:0-mem", 5.0)]
    bad.go_backwards(3.0)
    good.advance(1.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = ms.deltas(periods, epoch=1)
        assert isinstance(d, Deltas) and d == [(PKG, 1.0)] and d.unknown == {"gpu:0", "gpu:0-mem"}
        bad.go_backwards(1.0)
        assert ms.deltas(periods, epoch=1).unknown == {"gpu:0", "gpu:0-mem"}  # warned already
    msgs = meter_warnings(caught)
    assert len(msgs) == 2 and all("went backwards by 3 J" in m for m in msgs)
    bad.advance(10.0)
    d = ms.deltas(periods, epoch=2)
    assert sorted(d) == [(PKG, 0.0), ("gpu:0", 10.0), ("gpu:0-mem", 10.0)] and not d.unknown
    assert ms.active == [bad, good]
    info = next(i for i in ms.info if i["name"] == "bad")
    assert info["dropped"] is None
    assert info["faults"] == {"gpu:0": {"backwards": 2}, "gpu:0-mem": {"backwards": 2}}


# stalled counters ----------------------------------------------------------------------------
def test_frozen_rapl_counter_is_unknown_then_dropped(zone: Path, rapl: RaplMeter,
                                                     tmp_path: Path, fast_stall: float) -> None:
    """Today a stuck energy_uj gave a *measured* 0 J. Now: unknown (null), one STALLED
    warning, and after STALL_DROP_WINDOWS stalled windows the domain is dropped."""
    path = tmp_path / "run.json"
    t = EnergyTracker([rapl], summary_path=path)
    t.start()
    pause = fast_stall
    records = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for epoch in range(STALL_DROP_WINDOWS):
            t.start_window("train", epoch)
            t.add_batch(8)
            time.sleep(pause)
            records.append(t.end_window())
            t.end_epoch()
    msgs = meter_warnings(caught)
    stalled = [m for m in msgs if "STALLED" in m]
    dropped = [m for m in msgs if "dropped" in m and "STALLED" not in m]
    assert len(stalled) == 1 and "has not moved for" in stalled[0] and PKG in stalled[0]
    assert len(dropped) == 1 and PKG in dropped[0]
    assert all(r is not None and r.joules is None and r.watts is None for r in records)
    assert all(r is not None and r.joules_by_domain == {PKG: None} for r in records)
    assert t.meters == ()  # its only domain dropped: the meter is no longer read
    s = t.finish()
    on_disk = json.loads(path.read_text())
    for e in on_disk["epochs"]:
        assert e["phases"]["train"]["joules"] is None  # null, never 0
        assert e["phases"]["train"]["joules_by_domain"] == {PKG: None}
    (info,) = on_disk["meters"]
    assert info["dropped_domains"][PKG]["reason"].startswith("stalled: the counter has not moved")
    assert set(info["dropped_domains"][PKG]) == {"reason", "epoch", "after_s"}
    assert info["dropped"]["reason"].startswith("every domain dropped")
    assert s["totals"]["run"]["joules"] is None


def test_a_counter_that_stalls_and_resumes_measures_again(zone: Path, rapl: RaplMeter,
                                                          fast_stall: float) -> None:
    t = EnergyTracker([rapl])
    t.start()
    t.start_window("train", 0)
    time.sleep(fast_stall)
    with pytest.warns(MeterWarning, match="STALLED"):
        assert t.end_window().joules is None  # type: ignore[union-attr]
    t.start_window("train", 1)
    set_energy(zone, 5_000_000)  # moves again: this delta holds the stalled time's energy
    assert t.end_window().joules is None  # type: ignore[union-attr]
    t.start_window("train", 2)
    set_energy(zone, 6_000_000)
    assert t.end_window().joules == pytest.approx(1.0)  # type: ignore[union-attr]
    t.finish()


def test_counter_that_never_moved_in_a_short_stage_is_reported_stalled(rapl: RaplMeter) -> None:
    """Every gap between reads shorter than a stall, but the counter never moved in the whole
    stage (more than 3 update periods): no window is a number, and the stage's end says so."""
    t = EnergyTracker([rapl])
    t.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for epoch in range(2):
            t.start_window("train", epoch)
            time.sleep(0.01)
            assert t.end_window().joules_by_domain == {PKG: None}  # type: ignore[union-attr]
            t.end_epoch()
    with pytest.warns(MeterWarning, match=r"'cpu:package-0'.*STALLED: it never moved in the"):
        s = t.finish()
    assert s["meters"][0]["faults"] == {PKG: {"stalled": 1}}
    assert all(e["phases"]["train"]["joules"] is None for e in s["epochs"])


def test_fake_meter_without_a_period_never_stalls() -> None:
    """A FakeMeter (update_period_s=0) that does not move is a known 0 J, as before."""
    m = FakeMeter()
    t = EnergyTracker([m])
    t.start()
    t.start_window("train", 0)
    time.sleep(0.15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert t.end_window().joules == 0.0  # type: ignore[union-attr]
    t.finish()


def test_quiet_reads_give_no_number_but_keep_what_the_window_measured() -> None:
    """Still for an update period or more (not yet a stall): that read gives no number and no
    warning. A window with nothing else is unknown, never a measured 0 J; a window that moved
    before keeps its value."""
    m = BoundedMeter(("gpu:0",), max_w=500.0, period_s=0.05)
    t = EnergyTracker([m])
    t.start()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t.start_window("train", 0)
        time.sleep(0.07)
        assert t.end_window().joules is None  # type: ignore[union-attr]
        t.start_window("train", 1)
        m.advance(5.0)
        t.start_window("validate", 1)  # pauses train; the counter is still during validation
        time.sleep(0.07)
        assert t.end_window().joules is None  # type: ignore[union-attr]
        assert t.end_window().joules == 5.0  # type: ignore[union-attr]
    t.finish()


# the accounting --------------------------------------------------------------------------------
def test_ledger_unknown_domain_in_window_step_and_totals() -> None:
    """feed(unknown=) makes the window and the step window None for that domain only; the
    phase total is None for it too; other domains are not affected."""
    ctx = RecordContext(periods={"gpu:0": 0.1, "gpu:1": 0.1})
    lg = Ledger(ctx, "fit", 0, 0.0)
    lg.open("train", 0)
    lg.feed([("gpu:0", 5.0), ("gpu:1", 5.0)], 1.0)
    lg.feed([("gpu:1", 5.0)], 2.0, unknown={"gpu:0"})
    step = lg.step()
    assert step is not None and step.joules == 10.0  # gpu:1 only
    rec = lg.close()
    assert rec.joules_by_domain == {"gpu:0": None, "gpu:1": 10.0}
    lg.open("train", 0)
    lg.feed([("gpu:0", 4.0), ("gpu:1", 4.0)], 3.0)
    assert lg.close().joules_by_domain == {"gpu:0": 4.0, "gpu:1": 4.0}
    epoch = lg.end_epoch()
    assert epoch.phases["train"].joules_by_domain == {"gpu:0": None, "gpu:1": 14.0}
    assert ctx.record("train", -1, lg.totals()["train"]).joules_by_domain == {
        "gpu:0": None, "gpu:1": 14.0}
    d = Deltas([("gpu:1", 1.0)])
    d.unknown.add("gpu:0")
    lg.feed(d, 4.0, d.unknown)  # the tracker hands a reading's unknown domains over
    assert lg.other.unknown == {"gpu:0"}


def test_acc_state_carries_unknown_and_old_states_load() -> None:
    acc = Acc()
    acc.joules = {"gpu:0": 1.0}
    assert "unknown" not in acc.state()  # unchanged when nothing is faulted
    acc.unknown.add("gpu:0")
    state = acc.state()
    assert state["unknown"] == ["gpu:0"]
    assert Acc.from_state(json.loads(json.dumps(state))).unknown == {"gpu:0"}
    v2 = {"version": 2, "epochs": 1, "totals": {
        "train": {"joules": {"gpu:0": 3.0}, "seconds": 1.0, "samples": 4, "batches": 1}}}
    assert restore_state(v2)["totals"]["train"].unknown == set()
    with pytest.raises(Exception, match="not a state"):
        restore_state({**v2, "totals": {"train": {**v2["totals"]["train"], "unknown": "gpu:0"}}})


def test_tracker_state_dict_keeps_the_hole() -> None:
    """A checkpoint taken after a faulted window restores the train total as unknown."""
    m = BoundedMeter(("gpu:0",), max_w=10.0)
    t = EnergyTracker([m])
    t.start()
    t.start_window("train", 0)
    m.advance(1e6)
    with pytest.warns(MeterWarning):
        t.end_window()
    t.end_epoch()
    state: dict[str, Any] = json.loads(json.dumps(t.state_dict()))
    t.finish()
    assert state["totals"]["train"]["unknown"] == ["gpu:0"]
    t2 = EnergyTracker([FakeMeter(("gpu:0",))])
    t2.load_state_dict(state)
    t2.start()
    assert t2.totals()["train"].joules_by_domain == {"gpu:0": None}
    t2.finish()


# the demo --------------------------------------------------------------------------------------
def test_demo_on_a_frozen_rapl_tree_says_stalled_and_reports_no_watts(tmp_path: Path) -> None:
    """`wattwise demo --rapl-root <frozen tree>` used to print 'MEASURED ... 0.00 W'."""
    pytest.importorskip("lightning")
    pytest.importorskip("sklearn")
    write_zone(tmp_path / "powercap" / "intel-rapl:0", "package-0", 123_456_789)
    out = tmp_path / "demo"
    import wattwise

    src = str(Path(wattwise.__file__).resolve().parents[1])  # this wattwise, not an installed one
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run(
        [sys.executable, "-m", "wattwise", "demo", "--epochs", "2", "--meters", "rapl",
         "--rapl-root", str(tmp_path / "powercap"), "--out", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout + proc.stderr
    assert "STALLED" in text and "'cpu:package-0'" in text
    lines = [ln.split() for ln in proc.stdout.splitlines()]
    header = next(ln for ln in lines if ln[:2] == ["phase", "joules"])
    rows = [ln for ln in lines if ln and ln[0] in ("train", "validate", "run")]
    assert {r[0] for r in rows} == {"train", "validate", "run"}
    for r in rows:  # joules and watts: unknown, not 0.00
        assert r[1] == "n/a" and r[header.index("W")] == "n/a", r
    summary = json.loads((out / "summary.json").read_text())
    for epoch in summary["epochs"]:
        for phase in epoch["phases"].values():
            assert phase["joules"] is None and phase["watts"] is None
    assert summary["meters"][0]["faults"]["cpu:package-0"]["stalled"] >= 1
    # the run table says why the numbers are missing, under the meter
    assert any("cpu:package-0: STALLED x" in ln and "never 0 J" in ln
               for ln in proc.stdout.splitlines()), proc.stdout[-3000:]
