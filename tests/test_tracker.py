"""Tests of the framework-neutral EnergyTracker, driven by FakeMeter (scripted counters)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wattwise import EnergyTracker
from wattwise.errors import (
    ConfigurationError,
    EstimateWarning,
    MeterWarning,
    WattwiseError,
)
from wattwise.testing import FakeMeter


def started(*meters: FakeMeter, **kwargs: Any) -> EnergyTracker:
    tracker = EnergyTracker(list(meters), **kwargs)
    tracker.start()
    return tracker


# construction ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"meters": "gpu"}, "meters='gpu'"),
        ({"meters": []}, "meters"),
        ({"meters": ["nvml", "nvml"]}, "'nvml'"),
        ({"meters": [3]}, "3"),
        ({"min_window_s": -1.0}, "min_window_s=-1.0"),
        ({"min_window_s": float("inf")}, "min_window_s"),
        ({"idle_baseline_s": -2}, "idle_baseline_s=-2"),
        ({"carbon_intensity_g_per_kwh": -5.0}, "carbon_intensity_g_per_kwh=-5.0"),
        ({"carbon_intensity_g_per_kwh": 300.0, "country_iso_code": "FRA"}, "not both"),
        ({"country_iso_code": "France"}, "country_iso_code='France'"),
        ({"node_meters": 1}, "node_meters=1"),
        ({"gpu_devices": [0, -1]}, "gpu_devices"),
        ({"gpu_devices": "0"}, "gpu_devices='0'"),
        ({"run_name": 5}, "run_name=5"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ConfigurationError, match=word.replace("(", r"\(")) as info:
        EnergyTracker(**kwargs)
    assert "EnergyTracker" in str(info.value)


def test_constructor_has_no_side_effects(tmp_path: Path) -> None:
    meter = FakeMeter()
    EnergyTracker([meter], summary_path=tmp_path / "s.json", idle_baseline_s=5.0)
    assert meter.reads == 0
    assert not (tmp_path / "s.json").exists()


def test_same_meter_twice_and_duplicate_domains() -> None:
    m = FakeMeter()
    with pytest.raises(ConfigurationError, match="twice"):
        EnergyTracker([m, m])
    t = EnergyTracker([FakeMeter(("gpu:0",)), FakeMeter(("gpu:0",))])
    with pytest.raises(ConfigurationError, match="'gpu:0'"):
        t.start()


def test_misuse_raises_clearly() -> None:
    t = EnergyTracker([FakeMeter()])
    with pytest.raises(WattwiseError, match="start"):
        t.start_window("train", 0)
    t.start()
    with pytest.raises(WattwiseError, match="no window is open"):
        t.add_batch(1)
    with pytest.raises(WattwiseError, match="no window is open"):
        t.end_window()
    with pytest.raises(ConfigurationError, match="phase='training'"):
        t.start_window("training", 0)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="epoch=-1"):
        t.start_window("train", -1)
    with pytest.raises(ConfigurationError, match="status='ok'"):
        t.finish("ok")  # type: ignore[arg-type]
    assert t.step_reading() is None  # no window: nothing to report, no error


# accounting ----------------------------------------------------------------------------------
def test_window_record_values() -> None:
    gpu = FakeMeter(("gpu:0",), scope="device")
    cpu = FakeMeter(("cpu:package-0", "cpu:dram-0"))
    t = started(gpu, cpu)
    t.start_window("train", 0)
    for _ in range(4):
        t.add_batch(8)
    gpu.advance(60.0)
    cpu.advance({"cpu:package-0": 30.0, "cpu:dram-0": 6.0})
    rec = t.end_window()
    assert rec.phase == "train" and rec.epoch == 0
    assert rec.joules == pytest.approx(96.0)
    assert dict(rec.joules_by_domain) == {"gpu:0": 60.0, "cpu:package-0": 30.0, "cpu:dram-0": 6.0}
    assert (rec.samples, rec.batches) == (32, 4)
    assert rec.joules_per_sample == pytest.approx(3.0)
    assert rec.joules_per_batch == pytest.approx(24.0)
    assert rec.seconds > 0
    assert rec.watts == pytest.approx(96.0 / rec.seconds)
    assert rec.estimated is False
    assert rec.active_joules is None and rec.co2_g is None
    m = rec.metrics()
    assert m["joules"] == pytest.approx(96.0) and m["joules/gpu:0"] == 60.0
    assert m["samples"] == 32.0 and "active_joules" not in m and "co2_g" not in m
    assert set(m) == {
        "joules",
        "joules_per_sample",
        "joules_per_batch",
        "watts",
        "seconds",
        "samples",
        "joules/gpu:0",
        "joules/cpu:package-0",
        "joules/cpu:dram-0",
    }


def test_gaps_go_to_other_and_everything_adds_up() -> None:
    m = FakeMeter(joules_per_read=1.0)
    t = started(m)  # read 1 (baseline value 1)
    m.advance(5.0)  # before any window -> other
    t.start_window("train", 0)  # read 2: other += 6
    m.advance(10.0)
    train = t.end_window()  # read 3: train += 11
    m.advance(3.0)
    t.start_window("validate", 0)  # read 4: other += 4
    m.advance(2.0)
    val = t.end_window()  # read 5: validate += 3
    ep = t.end_epoch()
    m.advance(7.0)
    summary = t.finish()  # read 6: other += 8
    assert (train.joules, val.joules) == (11.0, 3.0)
    assert ep.joules == 14.0 and set(ep.phases) == {"train", "validate"}
    tot = t.totals()
    assert tot["other"].joules == 18.0
    assert summary["totals"]["run"]["joules"] == m.counters["fake:0"] - 1.0 == 32.0
    assert summary["totals"]["other"]["joules"] == 18.0
    assert summary["totals"]["phases"]["train"]["joules"] == 11.0
    run_s = summary["totals"]["run"]["seconds"]
    assert run_s == pytest.approx(summary["duration_s"])


def test_nested_window_pauses_outer() -> None:
    m = FakeMeter()
    t = started(m)
    t.start_window("train", 0)
    t.add_batch(10)
    m.advance(100.0)
    t.start_window("validate", 0)  # train gets 100
    t.add_batch(5)
    m.advance(20.0)
    val = t.end_window()  # validate gets 20
    m.advance(50.0)
    t.add_batch(10)
    train = t.end_window()
    assert val.joules == 20.0 and val.samples == 5
    assert train.joules == 150.0 and train.samples == 20 and train.batches == 2


def test_windows_of_one_phase_are_summed_per_epoch() -> None:
    m = FakeMeter()
    t = started(m)
    for j in (4.0, 6.0):
        t.start_window("validate", 3)
        t.add_batch(2)
        m.advance(j)
        assert t.end_window().joules == j
    t.start_window("train", 3)
    m.advance(1.0)
    t.add_batch(1)
    t.end_window()
    ep = t.end_epoch()
    assert ep.epoch == 3
    v = ep.phases["validate"]
    assert v.joules == 10.0 and v.samples == 4 and v.batches == 2 and v.joules_per_sample == 2.5
    assert ep.joules == 11.0
    assert ep.seconds == pytest.approx(sum(r.seconds for r in ep.phases.values()))


def test_end_epoch_closes_open_window_and_finish_flushes_pending() -> None:
    m = FakeMeter()
    t = started(m)
    t.start_window("train", 0)
    m.advance(2.0)
    ep = t.end_epoch()
    assert ep.phases["train"].joules == 2.0
    t.start_window("test", 1)
    m.advance(3.0)
    s = t.finish()
    assert [e["phases"].keys() for e in s["epochs"]] == [{"train": 0}.keys(), {"test": 0}.keys()]
    assert s["epochs"][1]["phases"]["test"]["joules"] == 3.0


def test_short_stalled_window_is_unknown_not_zero() -> None:
    slow = FakeMeter(("gpu:0",), update_period_s=3600.0)
    fast = FakeMeter(("cpu:package-0",), update_period_s=3600.0)
    t = started(slow, fast)
    slow.stall()
    t.start_window("train", 0)
    t.add_batch(4)
    fast.advance(2.0)
    rec = t.end_window()
    assert rec.joules_by_domain["gpu:0"] is None
    assert rec.joules == 2.0  # the known domain only
    fast.stall()
    t.start_window("train", 0)
    t.add_batch(4)
    rec = t.end_window()
    assert rec.joules is None and rec.joules_per_sample is None and rec.watts is None
    assert "joules" not in rec.metrics()
    ep = t.end_epoch()
    assert ep.phases["train"].joules == 2.0
    # a counter without an update period that did not move is a measured 0 J
    t2 = started(FakeMeter(("cpu:package-0",)))
    t2.start_window("train", 0)
    t2.add_batch(1)
    rec = t2.end_window()
    assert rec.joules == 0.0 and rec.joules_by_domain["cpu:package-0"] == 0.0


def test_step_readings_respect_min_window() -> None:
    m = FakeMeter()
    t = started(m, min_window_s=3600.0)
    t.start_window("train", 0)
    reads = m.reads
    for _ in range(100):
        t.add_batch(4)
        assert t.step_reading() is None
    assert m.reads == reads  # no meter read when no step reading is due
    t.end_window()

    t2 = started(m2 := FakeMeter(), min_window_s=0.0)
    t2.start_window("train", 0)
    steps = []
    for _ in range(5):
        t2.add_batch(4)
        t2.add_batch(4)
        m2.advance(8.0)
        steps.append(t2.step_reading())
    window = t2.end_window()
    assert all(s is not None for s in steps)
    assert [s.step for s in steps if s] == [1, 3, 5, 7, 9]
    assert all(
        s.joules == 8.0 and s.samples == 8 and s.batches == 2 and s.joules_per_sample == 1.0
        for s in steps
        if s
    )
    assert window.joules == 40.0 and window.batches == 10
    t2.start_window("train", 1)
    t2.add_batch(1)
    m2.advance(1.0)
    s = t2.step_reading()
    assert s is not None and s.step == 10 and s.epoch == 1  # global batch index per phase


def test_step_reading_waits_for_min_window() -> None:
    m = FakeMeter()
    t = started(m, min_window_s=0.05)
    t.start_window("train", 0)
    t.add_batch(1)
    assert t.step_reading() is None
    time.sleep(0.06)
    s = t.step_reading()
    assert s is not None and s.seconds >= 0.05


# faults --------------------------------------------------------------------------------------
def test_failing_meter_is_reported_once_dropped_and_its_energy_kept(tmp_path: Path) -> None:
    good = FakeMeter(("cpu:package-0",), name="good")
    bad = FakeMeter(("gpu:0",), name="bad")
    t = started(good, bad, summary_path=tmp_path / "run.json")
    t.start_window("train", 0)
    good.advance(1.0)
    bad.advance(10.0)
    t.end_window()
    bad.fail_on_read()
    bad.advance(99.0)
    with pytest.warns(MeterWarning, match="'bad'.*dropped.*injected") as rec:
        t.start_window("train", 1)
    good.advance(2.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once only
        r = t.end_window()
    assert len([w for w in rec if issubclass(w.category, MeterWarning)]) == 1
    assert r.joules_by_domain == {"cpu:package-0": 2.0, "gpu:0": None}
    assert t.meters == (good,)
    assert not bad.closed  # a meter the user passed belongs to the user: never closed by us
    s = t.finish()
    assert s["totals"]["phases"]["train"]["joules_by_domain"]["gpu:0"] == 10.0
    info = {m["name"]: m for m in s["meters"]}
    assert info["bad"]["dropped"]["reason"].startswith("read failed: MeterReadError")
    assert info["good"]["dropped"] is None
    on_disk = json.loads((tmp_path / "run.json").read_text())
    assert on_disk["meters"] == s["meters"]


def test_meter_raising_anything_never_kills_training() -> None:
    m = FakeMeter()
    t = started(m)
    m.fail_on_read(exc=ZeroDivisionError("bug in a meter"))
    with pytest.warns(MeterWarning, match="ZeroDivisionError"):
        t.start_window("train", 0)
    t.add_batch(3)
    rec = t.end_window()
    assert rec.joules is None and rec.samples == 3 and rec.joules_per_sample is None
    assert t.meters == ()
    s = t.finish()
    assert s["status"] == "completed" and s["totals"]["run"]["joules"] is None


def test_counter_going_backwards_is_a_reset_of_that_window_only() -> None:
    """A counter that decreases is re-based (one warning): the time it happened in is unknown,
    the windows after it are measured again (tests/test_faults.py has the per-domain cases)."""
    m = FakeMeter()
    t = started(m)
    t.start_window("train", 0)
    m.advance(5.0)
    assert t.end_window().joules == 5.0
    m.go_backwards(3.0)
    with pytest.warns(MeterWarning, match="backwards"):
        t.start_window("train", 1)  # the reset falls between the windows: "other" is unknown
    m.advance(50.0)
    assert t.end_window().joules == 50.0
    totals = t.totals()
    assert totals["train"].joules == 55.0 and totals["other"].joules is None


# estimates -----------------------------------------------------------------------------------
def test_estimates_not_mixed_with_measured() -> None:
    real = FakeMeter(("gpu:0",), name="real")
    est = FakeMeter(("estimate:cpu",), estimated=True, name="guess")
    t = started(real, est)
    assert t.estimated is False and t.meters == (real,)
    t.start_window("train", 0)
    real.advance(10.0)
    est.advance(1000.0)
    rec = t.end_window()
    assert (
        rec.joules == 10.0 and rec.estimated is False and "estimate:cpu" not in rec.joules_by_domain
    )
    s = t.finish()
    assert s["excluded_estimates"]["joules_by_domain"] == {"estimate:cpu": 1000.0}
    assert {m["name"]: m["use"] for m in s["meters"]} == {"real": "measured", "guess": "excluded"}
    assert not est.closed and not real.closed  # the user's meters: never closed by us


def test_estimate_only_run_is_labelled() -> None:
    est = FakeMeter(("estimate:node",), estimated=True)
    with pytest.warns(EstimateWarning, match="ESTIMATES"):
        t = started(est)
    t.start_window("train", 0)
    est.advance(4.0)
    t.add_batch(2)
    rec = t.end_window()
    assert rec.estimated is True and rec.joules == 4.0
    s = t.finish()
    assert s["estimated"] is True and s["totals"]["run"]["estimated"] is True


def test_no_meter_at_all_gives_none_and_a_warning() -> None:
    m = FakeMeter()
    m.fail_on_read()
    with pytest.warns(MeterWarning):
        t = started(m)
    t.start_window("train", 0)
    t.add_batch(1)
    assert t.end_window().joules is None


def test_approximate_domains_are_noted() -> None:
    m = FakeMeter(("gpu:0", "gpu:1"), approximate_domains=("gpu:1",))
    s = started(m).finish()
    assert s["approximate_domains"] == ["gpu:1"]

    class ReadingOnly(FakeMeter):  # a meter that marks approximation only in its readings
        def describe(self) -> dict[str, object]:
            d = super().describe()
            d.pop("approximate_domains", None)
            return d

    s = started(ReadingOnly(("gpu:0",), approximate_domains=("gpu:0",))).finish()
    assert s["approximate_domains"] == ["gpu:0"]


# idle baseline and CO2 -----------------------------------------------------------------------
def test_idle_baseline_and_active_joules() -> None:
    m = FakeMeter(joules_per_read=1.0)
    t = started(m, idle_baseline_s=0.05)
    s = t.summary()
    idle = s["idle_baseline"]
    assert idle["seconds"] >= 0.05
    assert idle["watts"] == pytest.approx(1.0 / idle["seconds"])
    assert t.totals()["other"].joules == 1.0  # baseline energy is accounted, in other
    t.start_window("train", 0)
    m.advance(20.0)
    rec = t.end_window()
    assert rec.joules == 21.0  # 20 + 1 J at the end_window read (the start_window read is in other)
    assert rec.active_joules == pytest.approx(21.0 - idle["watts"] * rec.seconds)
    assert rec.active_joules < rec.joules
    assert "active_joules" in rec.metrics()


def test_co2_from_intensity() -> None:
    m = FakeMeter()
    t = started(m, carbon_intensity_g_per_kwh=400.0)
    t.start_window("train", 0)
    m.advance(3.6e6)  # 1 kWh
    rec = t.end_window()
    assert rec.co2_g == pytest.approx(400.0)
    s = t.finish()
    assert s["carbon_intensity"] == {"g_per_kwh": 400.0, "source": "argument"}
    assert s["totals"]["run"]["co2_g"] == pytest.approx(400.0)


def test_country_without_codecarbon_raises_with_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    """At construction, not at start: codecarbon's offline data is where the code is looked up."""
    from wattwise import config

    monkeypatch.setattr(config, "_energy_mix", lambda: None)  # codecarbon not installed
    with pytest.raises(ConfigurationError, match="country_iso_code='FRA'.*pip install"):
        EnergyTracker([FakeMeter()], country_iso_code="FRA")


def test_unknown_country_raises_at_construction() -> None:
    pytest.importorskip("codecarbon")
    with pytest.raises(ConfigurationError, match="country_iso_code='ZZZ'.*not a country"):
        EnergyTracker([FakeMeter()], country_iso_code="ZZZ")


def test_country_with_codecarbon_gives_co2() -> None:
    pytest.importorskip("codecarbon")
    cc = pytest.importorskip("wattwise.meters.codecarbon")
    if not hasattr(cc, "carbon_intensity_g_per_kwh"):
        pytest.skip("wattwise.meters.codecarbon.carbon_intensity_g_per_kwh not written yet")
    m = FakeMeter()
    t = started(m, country_iso_code="FRA")
    t.start_window("train", 0)
    m.advance(3.6e6)
    rec = t.end_window()
    intensity = cc.carbon_intensity_g_per_kwh("FRA")
    assert 0 < intensity < 2000
    assert rec.co2_g == pytest.approx(intensity)


# summary file, status, checkpoints ----------------------------------------------------------
def test_summary_written_at_start_epochs_and_finish(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "run.json"
    m = FakeMeter(("gpu:0",))
    t = EnergyTracker([m], summary_path=path, run_name="r1")
    t.start(hardware={"gpu": "FakeGPU"}, metadata={"batch_size": 8})
    s = json.loads(path.read_text())
    assert s["status"] == "running" and s["schema_version"] == 2 and s["epochs"] == []
    assert s["hardware"]["gpu"] == "FakeGPU" and "platform" in s["hardware"]
    assert s["metadata"] == {"batch_size": 8} and s["run_name"] == "r1"
    for epoch in range(3):
        t.start_window("train", epoch)
        t.add_batch(8)
        m.advance(8.0)
        t.end_window()
        t.end_epoch()
        assert t.flush()  # the background writer has caught up
        s = json.loads(path.read_text())
        assert len(s["epochs"]) == epoch + 1 and s["epochs"][-1]["phases"]["train"]["joules"] == 8.0
    t.set_advice({"verdict": "fine"})
    final = t.finish()
    assert json.loads(path.read_text()) == final
    assert (
        final["status"] == "completed"
        and final["finished_at"]
        and final["advice"] == {"verdict": "fine"}
    )
    assert final["epochs_completed"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # no temp files left


def test_summary_rewritten_after_every_epoch_without_blocking(tmp_path: Path) -> None:
    """The file follows every epoch (the writer coalesces when the disk is slower than the
    epochs, but always ends on the newest state), and is valid JSON whenever it is read."""
    path = tmp_path / "run.json"
    m = FakeMeter()
    t = EnergyTracker([m], summary_path=path)
    t.start()
    seen = []
    for epoch in range(200):
        t.start_window("train", epoch)
        t.add_batch(4)
        m.advance(1.0)
        t.end_window()
        t.end_epoch()
        seen.append(len(json.loads(path.read_text())["epochs"]))  # never half a file
    assert seen == sorted(seen)  # never goes back
    assert t.flush()
    on_disk = json.loads(path.read_text())
    assert len(on_disk["epochs"]) == 200 and on_disk["status"] == "running"
    assert [e["epoch"] for e in on_disk["epochs"]] == list(range(200))
    assert on_disk["epochs"][-1]["phases"]["train"]["joules"] == 1.0
    final = t.finish()
    assert json.loads(path.read_text()) == final and len(final["epochs"]) == 200


def test_failed_and_interrupted_status(tmp_path: Path) -> None:
    t = started(FakeMeter(), summary_path=tmp_path / "a.json")
    t.start_window("train", 0)
    s = t.finish("failed", RuntimeError("loss is nan"))
    assert s["status"] == "failed" and s["error"] == "RuntimeError: loss is nan"
    assert t.finish("completed") is s  # idempotent
    assert json.loads((tmp_path / "a.json").read_text())["status"] == "failed"
    with pytest.raises(WattwiseError):
        t.start_window("train", 1)


def test_unwritable_summary_warns_and_training_continues(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    t = EnergyTracker([FakeMeter()], summary_path=blocker / "run.json")
    with pytest.warns(Warning, match="cannot write"):
        t.start()
    t.start_window("train", 0)
    assert t.end_window().seconds >= 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # reported once only
        t.finish()


def test_atexit_marks_unfinished_run_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    code = textwrap.dedent(f"""
        from wattwise import EnergyTracker
        from wattwise.testing import FakeMeter
        m = FakeMeter()
        t = EnergyTracker([m], summary_path={str(path)!r})
        t.start()
        t.start_window("train", 0)
        m.advance(5.0)
        t.end_window()
        t.end_epoch()
        t.start_window("train", 1)
        m.advance(2.0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    s = json.loads(path.read_text())
    assert s["status"] == "interrupted"
    assert s["totals"]["run"]["joules"] == 7.0
    assert [e["epoch"] for e in s["epochs"]] == [0, 1]


def test_hard_kill_keeps_every_finished_epoch(tmp_path: Path) -> None:
    """SIGKILL (no atexit, no finish) right after an epoch: the file still holds it."""
    path = tmp_path / "run.json"
    code = textwrap.dedent(f"""
        import sys, time
        from wattwise import EnergyTracker
        from wattwise.testing import FakeMeter
        m = FakeMeter()
        t = EnergyTracker([m], summary_path={str(path)!r})
        t.start()
        for epoch in range(20):
            t.start_window("train", epoch)
            m.advance(1.0)
            t.end_epoch()
        t.start_window("train", 20)  # the epoch in flight when the process dies
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 10.0  # the background writer's last write lands
        while time.monotonic() < deadline:
            try:
                if len(json.loads(path.read_text())["epochs"]) == 20:
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    s = json.loads(path.read_text())
    assert s["status"] == "running"  # nobody could say otherwise
    assert [e["epoch"] for e in s["epochs"]] == list(range(20))
    assert sum(e["joules"] for e in s["epochs"]) == 20.0


def test_state_dict_resumes_totals() -> None:
    m = FakeMeter()
    t = started(m)
    for epoch in range(2):
        t.start_window("train", epoch)
        t.add_batch(10)
        m.advance(100.0)
        t.end_window()
        t.end_epoch()
    state = json.loads(json.dumps(t.state_dict()))  # must survive a checkpoint file
    assert state["epochs"] == 2

    m2 = FakeMeter()
    t2 = EnergyTracker([m2])
    t2.load_state_dict(state)
    t2.start()
    t2.start_window("train", 2)
    t2.add_batch(10)
    m2.advance(50.0)
    t2.end_window()
    t2.end_epoch()
    train = t2.totals()["train"]
    assert train.joules == 250.0 and train.samples == 30 and train.joules_per_sample == 250.0 / 30
    assert t2.state_dict()["epochs"] == 3
    t2.load_state_dict(state)  # replaces, never adds twice
    assert t2.totals()["train"].joules == 250.0
    s = t2.finish()
    assert s["resumed_from"] == {"epochs": 2} and s["epochs_completed"] == 3
    with pytest.raises(ConfigurationError, match="load_state_dict"):
        t2.load_state_dict({"epochs": 1})


def test_factory_names_are_opened_lazily_at_start() -> None:
    factory = pytest.importorskip("wattwise.meters.factory")
    assert hasattr(factory, "open_meters")
    t = EnergyTracker(["codecarbon"])
    pytest.importorskip("codecarbon")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.start()
    try:
        assert t.estimated is True
        assert all(m.name == "codecarbon" for m in t.meters)
    finally:
        t.finish()


# property: exact accounting ------------------------------------------------------------------
_op = st.one_of(
    st.tuples(st.just("advance"), st.integers(0, 2), st.floats(0, 1e4, allow_nan=False)),
    st.tuples(
        st.just("start"), st.sampled_from(["train", "validate", "test", "predict"]), st.just(0.0)
    ),
    st.tuples(st.just("end"), st.just(0), st.just(0.0)),
    st.tuples(st.just("batch"), st.integers(0, 64), st.just(0.0)),
    st.tuples(st.just("step"), st.just(0), st.just(0.0)),
    st.tuples(st.just("epoch"), st.just(0), st.just(0.0)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(_op, max_size=40), per_read=st.floats(0, 10, allow_nan=False))
def test_windows_plus_other_equal_counter_movement(
    ops: list[tuple[str, Any, float]], per_read: float
) -> None:
    meters = [
        FakeMeter(("a",), joules_per_read=per_read),
        FakeMeter(("b", "c"), name="f2"),
        FakeMeter(("d",), name="f3"),
    ]
    doms = ["a", "b", "c", "d"]
    t = EnergyTracker(meters, min_window_s=0.0)  # type: ignore[arg-type]
    t.start()
    first = {d: v for m in meters for d, v in m.counters.items()}
    windows: list[float] = []
    epochs = 0
    epoch_j = 0.0
    samples = 0
    for op, arg, x in ops:
        if op == "advance":
            meters[arg].advance(x)
        elif op == "start":
            t.start_window(arg, epochs)
        elif op == "end" and t.current_phase is not None:
            windows.append(t.end_window().joules or 0.0)
        elif op == "batch" and t.current_phase is not None:
            t.add_batch(arg)
            samples += arg
        elif op == "step":
            t.step_reading()
        elif op == "epoch":
            ep = t.end_epoch()
            epoch_j += ep.joules or 0.0
            epochs += 1
    s = t.finish()
    moved = {d: v - first[d] for m in meters for d, v in m.counters.items()}
    tot = s["totals"]
    assert tot["run"]["joules"] == pytest.approx(sum(moved.values()), rel=1e-9, abs=1e-6)
    for d in doms:
        parts = [p["joules_by_domain"][d] or 0.0 for p in tot["phases"].values()]
        parts.append(tot["other"]["joules_by_domain"][d] or 0.0)
        assert math.fsum(parts) == pytest.approx(moved[d], rel=1e-9, abs=1e-6)
    phase_sum = math.fsum(p["joules"] or 0.0 for p in tot["phases"].values())
    epoch_sum = math.fsum(e["joules"] or 0.0 for e in s["epochs"])
    assert epoch_sum == pytest.approx(phase_sum, rel=1e-9, abs=1e-6)
    assert sum(p["samples"] for p in tot["phases"].values()) == samples
    seconds = math.fsum([p["seconds"] for p in tot["phases"].values()] + [tot["other"]["seconds"]])
    assert seconds == pytest.approx(s["duration_s"], rel=1e-9, abs=1e-9)
    assert all(j >= 0 for j in windows)


def test_docs_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The custom-loop example in docs/tracker.md runs as written (real torch, meters='auto')."""
    pytest.importorskip("torch")
    doc = (Path(__file__).resolve().parents[1] / "docs" / "tracker.md").read_text()
    code = doc.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # auto on a machine without counters warns (estimate)
        exec(compile(code, "docs/tracker.md", "exec"), {"__name__": "docs_example"})  # noqa: S102
    out = capsys.readouterr().out
    assert out.count("epoch ") >= 3 and "wattwise run 'custom-loop': completed" in out
    s = json.loads((tmp_path / "runs" / "custom-loop.json").read_text())
    assert s["status"] == "completed" and len(s["epochs"]) == 3
    assert s["totals"]["phases"]["train"]["samples"] == 3 * 512


def test_phase_record_from_sums_derives_ratios_and_never_divides_by_zero() -> None:
    from wattwise.tracker import PhaseRecord

    r = PhaseRecord.from_sums("train", 0, joules=12.0, joules_by_domain={"gpu:0": 12.0},
                              seconds=4.0, samples=6, batches=3, estimated=False)
    assert (r.joules_per_sample, r.joules_per_batch, r.watts) == (2.0, 4.0, 3.0)
    empty = PhaseRecord.from_sums("validate", 0, joules=1.0, joules_by_domain={},
                                  seconds=0.0, samples=0, batches=0, estimated=True)
    assert (empty.joules_per_sample, empty.joules_per_batch, empty.watts) == (None, None, None)
    unknown = PhaseRecord.from_sums("train", 1, joules=None, joules_by_domain={"gpu:0": None},
                                    seconds=2.0, samples=4, batches=1, estimated=False)
    assert unknown.joules_per_sample is None and unknown.watts is None
