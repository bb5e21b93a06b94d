"""CodeCarbonMeter: codecarbon's estimate without codecarbon's tracker.

Each reproduced model is compared with codecarbon's own function, and the meter with
codecarbon's ``OfflineEmissionsTracker`` measuring the same synthetic load in the same process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from wattwise.errors import ConfigurationError, MeterReadError
from wattwise.meters import _codecarbon_model as ccm
from wattwise.meters.codecarbon import CodeCarbonMeter

codecarbon = pytest.importorskip("codecarbon")

TABLE = os.path.join(ccm.codecarbon_dir() or "", "data", "hardware", "cpu_power.csv")


# -- the reproduced models against codecarbon's code ----------------------------------------
def test_tdp_table_match_equals_codecarbons() -> None:
    import pandas as pd
    from codecarbon.core.cpu import TDP

    df = pd.read_csv(TABLE)
    names = list(df["Name"])[::37]
    variants = [v for n in names[::3] for v in (  # the exact, the stripped and the token paths
        n.upper(), f"{n} CPU @ 2.40GHz", f"Intel(R) {n}", f"{n} 8-Core Processor",
        n.split()[0], n.replace("-", " "))]
    queries = names + variants + [
        "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
        "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz",
        "AMD Ryzen 9 5950X 16-Core Processor",
        "AMD EPYC 7763 64-Core Processor",
        "AMD EPYC",
        "Apple M2",
        "definitely not a cpu",
    ]
    tdp = TDP.__new__(TDP)  # its methods, without running its cpuinfo lookup
    mismatches = []
    for q in queries:
        match = tdp._get_matching_cpu(q, df)
        theirs = tdp._get_cpu_constant_power(match, df) if match else None
        ours = ccm.match_tdp_w(q, TABLE)
        if (theirs or None) != ours:
            mismatches.append((q, theirs, ours))
    assert not mismatches
    assert ccm.match_tdp_w("Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz", TABLE) == 150.0


@pytest.mark.parametrize("arm", [False, True])
def test_ram_power_equals_codecarbons(arm: bool) -> None:
    from codecarbon.external.ram import RAM

    ram = RAM()
    ram.is_arm_cpu = arm
    for gb in (0.5, 2, 3, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 6144):
        assert ccm.ram_power_w(gb * 1024**3, arm=arm) == pytest.approx(
            ram._calculate_ram_power(gb)
        ), gb


def test_cpu_power_and_load_equal_codecarbons(monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil
    from codecarbon.external.hardware import CPU, MODE_CPU_LOAD, SystemCPULoadMeter

    cpu = CPU("", MODE_CPU_LOAD, "x", 120, tracking_mode="machine")
    for load_percent in (0.0, 7.0, 33.0, 50.0, 81.0, 100.0):
        monkeypatch.setattr(cpu._cpu_load_meter, "percent", lambda v=load_percent: v)
        assert ccm.cpu_power_w(120.0, load_percent / 100) == pytest.approx(
            cpu._get_power_from_cpus().W
        )
    before = psutil.cpu_times()
    sum(i * i for i in range(300_000))
    after = psutil.cpu_times()
    meter = SystemCPULoadMeter()
    meter._last_times = before
    monkeypatch.setattr(psutil, "cpu_times", lambda: after)
    ours = ccm.busy_fraction(ccm.cpu_counts(before), ccm.cpu_counts(after))
    assert ours * 100 == pytest.approx(meter.percent())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="psutil's /proc parser")
def test_proc_stat_and_meminfo_read_as_psutil_reads_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psutil

    stats = [
        "cpu  4705 356 584 3699 23 23 11 7 50 3\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n",
        "cpu  5905 356 984 4099 73 23 31 7 650 3\ncpu0 1 2 3 4 5 6 7 8 9 10\nintr 1\n",
    ]
    ours, theirs = [], []
    monkeypatch.setattr(psutil, "PROCFS_PATH", str(tmp_path))
    for text in stats:
        (tmp_path / "stat").write_text(text)
        ours.append(ccm.cpu_counts_from_proc_stat(text))
        theirs.append(ccm.cpu_counts(psutil.cpu_times()))
    assert ccm.busy_fraction(*ours) == pytest.approx(ccm.busy_fraction(*theirs))
    assert 0.2 < ccm.busy_fraction(*ours) < 0.9
    monkeypatch.undo()
    meminfo = Path("/proc/meminfo").read_text()
    assert ccm.mem_total_bytes_from_proc_meminfo(meminfo) == psutil.virtual_memory().total


def test_cpu_model_from_proc_cpuinfo_equals_py_cpuinfos() -> None:
    from cpuinfo import cpuinfo as pci

    texts = [
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
        "model name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\n",
        "processor\t: 0\nBogoMIPS\t: 50.00\nCPU implementer\t: 0x41\n",  # ARM: none
        "processor\t: 0\ncpu\t\t: POWER9 (raw), altivec supported\n",
        "",
    ]
    if os.path.exists("/proc/cpuinfo"):
        texts.append(Path("/proc/cpuinfo").read_text(errors="replace"))
    for text in texts:
        theirs = pci._get_field(True, text, None, None, "model name", "cpu", "processor", "uarch")
        assert ccm.cpu_model_from_proc_cpuinfo(text) == theirs


# -- the meter ----------------------------------------------------------------------------
def test_meter_uses_the_table_tdp_times_sockets(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()  # no stat, no meminfo: psutil for those
    (tmp_path / "proc" / "cpuinfo").write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz\n"
    )
    for cpu, pkg in ((0, 0), (1, 0), (2, 1), (3, 1)):
        topo = tmp_path / "sys" / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text(f"{pkg}\n")
    with CodeCarbonMeter(proc_root=tmp_path / "proc", sysfs_cpu=tmp_path / "sys") as m:
        first = m.read()
        time.sleep(0.05)
        second = m.read()
        d = m.describe()
    assert d["cpu_model"] == "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz"
    assert d["cpu_tdp_w"] == 2 * 150.0 and d["cpu_tdp_source"] == "table"
    assert first.estimated and second.estimated and m.estimated
    assert set(second.joules) == {"cpu:estimated", "ram:estimated"}
    dt = second.time_s - first.time_s
    # between the idle floor (10 % of TDP) and full TDP, whatever the machine's load
    cpu_j = second.joules["cpu:estimated"] - first.joules["cpu:estimated"]
    assert 0.1 * 300.0 * dt * 0.9 < cpu_j < 300.0 * dt * 1.1
    ram_j = second.joules["ram:estimated"] - first.joules["ram:estimated"]
    assert ram_j == pytest.approx(m.ram_power_w * dt, rel=0.1)


def test_without_proc_cpuinfo_py_cpuinfo_finds_the_same_model(tmp_path: Path) -> None:
    """The macOS/Windows path (py-cpuinfo's subprocess on the lookup thread); on Linux it must
    find what /proc/cpuinfo says, which is the claim the fast path rests on."""
    with CodeCarbonMeter(proc_root=tmp_path / "missing") as m:
        first = m.read()  # the origin: never waits for the lookup
        assert dict(first.joules) == {"cpu:estimated": 0.0, "ram:estimated": 0.0}
        time.sleep(0.02)
        second = m.read()  # waits for py-cpuinfo (about a second)
        assert second.joules["cpu:estimated"] > 0
        slow = m.describe()["cpu_model"]
    if os.path.exists("/proc/cpuinfo"):
        with CodeCarbonMeter() as fast:
            fast.read()
            fast.read()
            assert fast.describe()["cpu_model"] == slow


def test_a_lookup_that_does_not_finish_fails_the_read_not_the_meter_open(tmp_path: Path) -> None:
    with CodeCarbonMeter(proc_root=tmp_path / "missing", setup_timeout_s=0.001) as m:
        m.read()
        with pytest.raises(MeterReadError, match="setup_timeout_s=0.001"):
            m.read()  # py-cpuinfo's subprocess takes far longer than 1 ms


def test_closed_meter_read_raises_and_bad_arguments_are_refused() -> None:
    m = CodeCarbonMeter()
    m.close()
    m.close()
    with pytest.raises(MeterReadError, match="closed"):
        m.read()
    with pytest.raises(ConfigurationError, match="measure_power_secs=0"):
        CodeCarbonMeter(measure_power_secs=0)
    with pytest.raises(ConfigurationError, match="country_iso_code='XYZ'"):
        CodeCarbonMeter("XYZ")


def test_emissions_follow_the_country_intensity() -> None:
    with CodeCarbonMeter("FRA") as m:
        time.sleep(0.02)
        r = m.read()
        grams = m.emissions_g
    assert grams == pytest.approx(r.total_joules / 3.6e6 * ccm_intensity("FRA"))
    with CodeCarbonMeter() as m:
        assert m.emissions_g is None


def ccm_intensity(code: str) -> float:
    from wattwise.meters.codecarbon import carbon_intensity_g_per_kwh

    return carbon_intensity_g_per_kwh(code)


# -- the estimate equals codecarbon's tracker on a synthetic load ----------------------------
_BUSY = "import time\nend = time.perf_counter() + {s}\nwhile time.perf_counter() < end: pass\n"


def _codecarbon_cpu(tracker: Any) -> Any:
    return next(h for h in tracker._hardware if type(h).__name__ == "CPU")


def test_estimate_equals_codecarbons_tracker_on_a_synthetic_load() -> None:
    """Every CPU busy for 2 s, then idle for 1 s, measured by both at once.

    Tolerance 5 % for the CPU: both sample the same /proc/stat every second, but the two 1 s
    grids start a few ms apart and /proc/stat ticks in 10 ms, so the interval holding the
    busy -> idle step sees a slightly different load (cubed). RAM: 3 % (the same watts over
    start/stop times up to tens of ms apart on a loaded machine). The run fails on a wrong TDP, a wrong RAM model or a
    wrong load model: the load lifts codecarbon's CPU energy far above its idle floor.
    """
    from codecarbon import OfflineEmissionsTracker

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tracker = OfflineEmissionsTracker(
            measure_power_secs=10, country_iso_code="FRA", save_to_file=False,
            log_level="error", allow_multiple_runs=True,
        )
        tracker.start()
    meter = CodeCarbonMeter()
    try:
        start = meter.read()
        n = os.cpu_count() or 1
        busy = [subprocess.Popen([sys.executable, "-c", _BUSY.format(s=2.0)]) for _ in range(n)]
        for p in busy:
            p.wait(timeout=30)
        time.sleep(1.0)
        end = meter.read()
        tracker.stop()
    finally:
        meter.close()
    theirs = tracker.final_emissions_data
    cc_cpu = _codecarbon_cpu(tracker)
    assert meter.describe()["cpu_tdp_w"] == cc_cpu._tdp  # the same TDP, exactly
    assert meter.ram_power_w == pytest.approx(theirs.ram_power)
    their_cpu_j = theirs.cpu_energy * 3.6e6
    their_ram_j = theirs.ram_energy * 3.6e6
    our_cpu_j = end.joules["cpu:estimated"] - start.joules["cpu:estimated"]
    our_ram_j = end.joules["ram:estimated"] - start.joules["ram:estimated"]
    idle_floor_j = 0.1 * cc_cpu._tdp * theirs.duration
    assert their_cpu_j > 1.5 * idle_floor_j, "the load did not show: the test can't tell"
    assert our_cpu_j == pytest.approx(their_cpu_j, rel=0.05)
    assert our_ram_j == pytest.approx(their_ram_j, rel=0.03)


# -- in the tracker: labelled an estimate; a failure drops it once, keeping its energy -----------
def test_in_the_tracker_estimated_and_dropped_once_keeping_its_energy(tmp_path: Path) -> None:
    from wattwise.errors import EstimateWarning, MeterWarning
    from wattwise.tracker import EnergyTracker

    meter = CodeCarbonMeter()
    t = EnergyTracker([meter], summary_path=tmp_path / "run.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", EstimateWarning)
        t.start()
    try:
        assert t.estimated
        t.start_window("train", 0)
        time.sleep(0.05)
        first = t.end_window()
        assert first is not None and first.estimated
        kept = first.joules_by_domain
        assert kept["cpu:estimated"] > 0 and kept["ram:estimated"] > 0  # type: ignore[operator]
        meter.close()  # its reads now raise MeterReadError
        with pytest.warns(MeterWarning, match="'codecarbon'.*dropped") as rec:
            t.start_window("train", 1)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # reported once only
            second = t.end_window()
        assert len([w for w in rec if issubclass(w.category, MeterWarning)]) == 1
        assert second is not None and second.joules_by_domain["cpu:estimated"] is None
    finally:
        s = t.finish()
    phases = s["totals"]["phases"]["train"]["joules_by_domain"]
    assert phases["cpu:estimated"] == pytest.approx(kept["cpu:estimated"])
    assert s["estimated"] is True
