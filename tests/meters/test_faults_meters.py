"""Plausibility at the meter edge: each counter's maximum power (RAPL power limits, NVML's
enforced board limit through the fake NVML library) and per-domain resets."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
from meter_test_helpers import set_energy, write_zone

from wattwise import EnergyTracker
from wattwise.errors import MeterWarning
from wattwise.meters import rapl as rapl_mod
from wattwise.meters.nvml import DEFAULT_MAX_POWER_W, POWER_LIMIT_MARGIN, NvmlMeter
from wattwise.meters.pyrapl import PyRaplMeter
from wattwise.meters.rapl import RaplMeter
from wattwise.testing import FakeMeter

HUGE = 3600.0
Libs = dict[str, Path]
State = Callable[[dict[str, object]], Path]


def test_rapl_max_power_from_limits_else_default_per_zone(intel_tree: Path) -> None:
    pkg0 = intel_tree / "intel-rapl:0"
    (pkg0 / "constraint_0_max_power_uw").write_text("125000000\n")  # 125 W
    (pkg0 / "constraint_1_max_power_uw").write_text("200000000\n")  # 200 W
    (pkg0 / "constraint_2_max_power_uw").write_text("0\n")  # none published: ignored
    (intel_tree / "intel-rapl:1" / "constraint_0_max_power_uw").write_text("0\n")
    with RaplMeter(intel_tree, include_psys=True, poll_interval_s=HUGE) as m:
        assert m.max_power_w("cpu:package-0") == pytest.approx(200.0 * rapl_mod.LIMIT_MARGIN)
        assert m.max_power_w("cpu:package-1") == rapl_mod.DEFAULT_MAX_POWER_W["package"]
        assert m.max_power_w("cpu:dram-0") == rapl_mod.DEFAULT_MAX_POWER_W["dram"]
        assert m.max_power_w("cpu:psys") == rapl_mod.DEFAULT_MAX_POWER_W["psys"]
        assert m.max_power_w("gpu:0") is None
        assert m.describe()["max_power_w"] == {d: m.max_power_w(d) for d in m.domains}


def test_rapl_reset_seen_by_the_poll_thread_is_reported_at_the_next_read(tmp_path: Path) -> None:
    """A reset between two reads (caught by a poll) is not counted and named in faults once;
    energy before and after it still counts."""
    root = tmp_path / "powercap"
    z = write_zone(root / "intel-rapl:0", "package-0", energy_uj=5_000_000)
    with RaplMeter(root, poll_interval_s=HUGE) as m:
        set_energy(z, 7_000_000)
        m._poll()  # +2 J
        set_energy(z, 100_000)  # reset: as a wrap this would be ~262,136 J
        m._poll()
        set_energy(z, 600_000)  # +0.5 J
        r = m.read()
        assert r.joules == {"cpu:package-0": pytest.approx(2.5)}
        assert "fell from 7000000 to 100000" in r.faults["cpu:package-0"]
        assert m.resets == {"cpu:package-0": 1} and m.wraps == {"cpu:package-0": 0}
        assert m.read().faults == {}


def test_estimates_and_fakes_have_no_power_bound() -> None:
    assert FakeMeter().max_power_w("fake:0") is None


def test_pyrapl_uses_rapl_defaults() -> None:
    """pyRAPL is not installed here: the method is checked on an unopened instance."""
    m = PyRaplMeter.__new__(PyRaplMeter)
    m._domains = ("cpu:package-0", "cpu:dram-0")
    assert m.max_power_w("cpu:package-0") == rapl_mod.DEFAULT_MAX_POWER_W["package"]
    assert m.max_power_w("cpu:dram-0") == rapl_mod.DEFAULT_MAX_POWER_W["dram"]
    assert m.max_power_w("gpu:0") is None


def test_nvml_max_power_from_enforced_limit(fake_nvml_libs: Libs, nvml_state: State) -> None:
    nvml_state({"count": 2, "dev0.power_limit_mw": 300_000, "dev1.power_limit_error": 3})
    with NvmlMeter(library_path=fake_nvml_libs["A"]) as m:
        assert m.max_power_w("gpu:0") == pytest.approx(300.0 * POWER_LIMIT_MARGIN)
        assert m.max_power_w("gpu:1") == DEFAULT_MAX_POWER_W  # no limit: the default
        assert m.max_power_w("gpu:7") is None
        assert m.describe()["max_power_w"] == {"gpu:0": pytest.approx(450.0),
                                               "gpu:1": DEFAULT_MAX_POWER_W}


def test_nvml_reset_on_gpu0_keeps_gpu1_measured(fake_nvml_libs: Libs, nvml_state: State,
                                                tmp_path: Path) -> None:
    """Today a reset of gpu:0's counter dropped the whole meter (gpu:1 too). Now gpu:0's
    window is unknown, gpu:1 keeps measuring, and gpu:0 measures again from the next window."""
    st: dict[str, object] = {"count": 2, "dev0.energy_mj": 1_000_000, "dev1.energy_mj": 5_000,
                             "dev0.power_limit_mw": 300_000, "dev1.power_limit_mw": 300_000}
    nvml_state(st)
    with NvmlMeter(library_path=fake_nvml_libs["A"]) as m:
        t = EnergyTracker([m], summary_path=tmp_path / "run.json")
        t.start()
        t.start_window("train", 0)
        nvml_state({**st, "dev0.energy_mj": 1_010_000, "dev1.energy_mj": 10_000})
        assert t.end_window().joules_by_domain == {  # type: ignore[union-attr]
            "gpu:0": pytest.approx(10.0), "gpu:1": pytest.approx(5.0)}
        t.start_window("validate", 0)
        nvml_state({**st, "dev0.energy_mj": 2_000, "dev1.energy_mj": 15_000})  # gpu:0 reset
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rec = t.end_window()
        assert rec is not None
        assert rec.joules_by_domain == {"gpu:0": None, "gpu:1": pytest.approx(5.0)}
        msgs = [str(w.message) for w in caught if issubclass(w.category, MeterWarning)]
        assert len(msgs) == 1 and "'gpu:0'" in msgs[0] and "backwards by 1008 J" in msgs[0]
        assert t.meters == (m,)  # not dropped
        t.end_epoch()
        t.start_window("train", 1)
        nvml_state({**st, "dev0.energy_mj": 4_000, "dev1.energy_mj": 20_000})
        assert t.end_window().joules_by_domain == {  # type: ignore[union-attr]
            "gpu:0": pytest.approx(2.0), "gpu:1": pytest.approx(5.0)}
        t.end_epoch()
        s = t.finish()
    phases = s["epochs"][0]["phases"]
    assert phases["validate"]["joules_by_domain"] == {"gpu:0": None, "gpu:1": pytest.approx(5.0)}
    assert phases["train"]["joules_by_domain"] == {"gpu:0": pytest.approx(10.0),
                                                   "gpu:1": pytest.approx(5.0)}
    totals = s["totals"]["phases"]
    assert totals["train"]["joules_by_domain"] == {"gpu:0": pytest.approx(12.0),
                                                   "gpu:1": pytest.approx(10.0)}
    assert totals["validate"]["joules_by_domain"] == {"gpu:0": None, "gpu:1": pytest.approx(5.0)}
    info = s["meters"][0]
    assert info["dropped"] is None and info["faults"]["gpu:0"] == {"backwards": 1}
    assert "gpu:1" not in info["faults"]


def test_nvml_implausible_jump_is_unknown(fake_nvml_libs: Libs, nvml_state: State) -> None:
    """300 kJ within a moment on a 300 W board (450 W plausible): a reset, not energy."""
    st: dict[str, object] = {"dev0.energy_mj": 1_000, "dev0.power_limit_mw": 300_000}
    nvml_state(st)
    with NvmlMeter(library_path=fake_nvml_libs["A"]) as m:
        t = EnergyTracker([m])
        t.start()
        t.start_window("train", 0)
        nvml_state({**st, "dev0.energy_mj": 300_001_000})
        with pytest.warns(MeterWarning, match=r"'gpu:0'.*moved 300000 J .*at most 450 W"):
            assert t.end_window().joules is None  # type: ignore[union-attr]
        t.start_window("train", 0)
        nvml_state({**st, "dev0.energy_mj": 300_031_000})
        assert t.end_window().joules == pytest.approx(30.0)  # type: ignore[union-attr]
        t.finish()
