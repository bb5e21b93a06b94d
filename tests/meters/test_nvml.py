"""NvmlMeter through the real pynvml against a fake NVML library compiled with gcc."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest

from wattwise.errors import ConfigurationError, MeterReadError, MeterUnavailableError, MeterWarning
from wattwise.meters.nvml import MIG_NOTE, NvmlMeter, parse_cuda_visible_devices

NOT_SUPPORTED = 3
GPU_IS_LOST = 15
DRIVER_NOT_LOADED = 9
HUGE = 3600.0

Libs = dict[str, Path]
State = Callable[[dict[str, object]], Path]


def test_energy_counter_mj_to_joules(fake_nvml_libs: Libs, nvml_state: State) -> None:
    st: dict[str, object] = {"count": 2, "dev0.energy_mj": 1_000_000, "dev1.energy_mj": 5_000}
    nvml_state(st)
    with NvmlMeter(library_path=fake_nvml_libs["A"]) as m:
        assert m.domains == ("gpu:0", "gpu:1")
        assert m.scope == "device" and m.name == "nvml" and not m.estimated
        r0 = m.read()
        assert r0.joules == {"gpu:0": 0.0, "gpu:1": 0.0}
        nvml_state({**st, "dev0.energy_mj": 1_012_345, "dev1.energy_mj": 5_500})
        r1 = m.read()
        assert r1.joules == {"gpu:0": pytest.approx(12.345), "gpu:1": pytest.approx(0.5)}
        assert r1.approximate_domains == frozenset() and r1.time_s >= r0.time_s
        d = m.describe()
        assert d["driver_version"] == "555.42-fakeA"
        assert [x["uuid"] for x in d["devices"]] == ["GPU-fakeA-0", "GPU-fakeA-1"]  # type: ignore[index]
        assert d["notes"] == []


def test_two_library_paths_in_one_process(fake_nvml_libs: Libs, nvml_state: State) -> None:
    nvml_state({"dev0.energy_mj": 10})
    with NvmlMeter(library_path=fake_nvml_libs["A"]) as a:
        assert a.describe()["devices"][0]["name"] == "Fake GPU A"  # type: ignore[index]
        # a second path while the first is open: pynvml holds one library per process
        with pytest.raises(MeterUnavailableError, match="another NvmlMeter"):
            NvmlMeter(library_path=fake_nvml_libs["B"])
        # the same path twice is fine
        with NvmlMeter(library_path=fake_nvml_libs["A"]) as a2:
            assert a2.read().joules == {"gpu:0": 0.0}
    with NvmlMeter(library_path=fake_nvml_libs["B"]) as b:
        assert b.describe()["devices"][0]["name"] == "Fake GPU B"  # type: ignore[index]
        assert b.describe()["driver_version"] == "555.42-fakeB"
    with NvmlMeter(library_path=fake_nvml_libs["A"]) as a3:
        assert a3.describe()["devices"][0]["uuid"] == "GPU-fakeA-0"  # type: ignore[index]
    import pynvml

    assert pynvml.nvmlLib is None  # closed: pynvml is left as found, for other NVML users


def test_default_library_absent_here_after_a_fake(fake_nvml_libs: Libs, nvml_state: State) -> None:
    """After a fake library, library_path=None goes back to libnvidia-ml.so.1 (absent here)."""
    nvml_state({})
    NvmlMeter(library_path=fake_nvml_libs["A"]).close()
    if Path("/dev/nvidiactl").exists():
        pytest.skip("a real NVIDIA driver is present")
    with pytest.raises(MeterUnavailableError, match="no NVML library") as ei:
        NvmlMeter()
    assert "Fix:" in str(ei.value)


def test_bad_library_file(tmp_path: Path) -> None:
    bogus = tmp_path / "libnvidia-ml.so.1"
    bogus.write_text("not a library")
    with pytest.raises(MeterUnavailableError, match="cannot load it"):
        NvmlMeter(library_path=bogus)


def test_driver_not_loaded(fake_nvml_libs: Libs, nvml_state: State) -> None:
    nvml_state({"init_error": DRIVER_NOT_LOADED})
    with pytest.raises(MeterUnavailableError, match="driver is not loaded"):
        NvmlMeter(library_path=fake_nvml_libs["A"])
    nvml_state({})  # recovers: the failed init did not leave a meter "open"
    NvmlMeter(library_path=fake_nvml_libs["B"]).close()


def test_cuda_visible_devices_indices_and_uuids(
    fake_nvml_libs: Libs, nvml_state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    st: dict[str, object] = {
        "count": 3,
        "dev0.energy_mj": 0,
        "dev1.energy_mj": 0,
        "dev2.energy_mj": 0,
        "dev2.uuid": "GPU-3f1c2d",
    }
    nvml_state(st)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    with NvmlMeter(library_path=fake_nvml_libs["A"]) as m:
        assert m.domains == ("gpu:0", "gpu:1")
        nvml_state({**st, "dev2.energy_mj": 7000, "dev0.energy_mj": 1000})
        assert m.read().joules == {"gpu:0": pytest.approx(7.0), "gpu:1": pytest.approx(1.0)}
        assert [x["nvml_index"] for x in m.describe()["devices"]] == [2, 0]  # type: ignore[index]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-3f1")  # unique UUID prefix, as CUDA allows
    with NvmlMeter(library_path=fake_nvml_libs["A"], devices=[0]) as m:
        assert m.describe()["devices"][0]["nvml_index"] == 2  # type: ignore[index]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")
    with NvmlMeter(library_path=fake_nvml_libs["A"], devices=[1]) as m:
        assert m.domains == ("gpu:1",)
        assert m.describe()["devices"][0]["nvml_index"] == 2  # type: ignore[index]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(MeterUnavailableError, match="no GPU visible"):
        NvmlMeter(library_path=fake_nvml_libs["A"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with pytest.raises(ConfigurationError, match=r"devices=\[1\].*sees 1 GPU"):
        NvmlMeter(library_path=fake_nvml_libs["A"], devices=[1])


def test_parse_cuda_visible_devices_rules() -> None:
    uuids = ["GPU-aaaa", "GPU-abcd", "GPU-ffff"]
    assert parse_cuda_visible_devices(None, uuids) == [
        ("0", 0, None),
        ("1", 1, None),
        ("2", 2, None),
    ]
    assert [i for _, i, _ in parse_cuda_visible_devices("2, 0", uuids)] == [2, 0]
    assert [i for _, i, _ in parse_cuda_visible_devices("0,-1,1", uuids)] == [0]  # stops at -1
    assert [i for _, i, _ in parse_cuda_visible_devices("0,7,1", uuids)] == [0]  # and at unknown
    assert [i for _, i, _ in parse_cuda_visible_devices("1,1", uuids)] == [1]  # and at repeats
    assert [i for _, i, _ in parse_cuda_visible_devices("GPU-a", uuids)] == []  # ambiguous
    assert [i for _, i, _ in parse_cuda_visible_devices("GPU-ab,GPU-f", uuids)] == [1, 2]
    old_mig = parse_cuda_visible_devices("MIG-GPU-ffff/1/0", uuids)
    assert old_mig == [("MIG-GPU-ffff/1/0", 2, "MIG-GPU-ffff/1/0")]
    assert parse_cuda_visible_devices("", uuids) == []


def test_mig_reports_parent_board_once(
    fake_nvml_libs: Libs, nvml_state: State, monkeypatch: pytest.MonkeyPatch
) -> None:
    st: dict[str, object] = {
        "count": 2,
        "dev1.energy_mj": 100_000,
        "mig0.uuid": "MIG-11111111-aaaa",
        "mig0.parent": 1,
        "mig1.uuid": "MIG-22222222-bbbb",
        "mig1.parent": 1,
    }
    nvml_state(st)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-11111111-aaaa,MIG-22222222-bbbb")
    with NvmlMeter(library_path=fake_nvml_libs["A"]) as m:
        assert m.domains == ("gpu:0",)  # two MIG instances, one board, counted once
        nvml_state({**st, "dev1.energy_mj": 103_000})
        assert m.read().joules == {"gpu:0": pytest.approx(3.0)}
        d = m.describe()
        assert MIG_NOTE in d["notes"]  # type: ignore[operator]
        dev = d["devices"][0]  # type: ignore[index]
        assert dev["nvml_index"] == 1 and dev["logical_indices"] == [0, 1]
        assert dev["mig_instances"] == ["MIG-11111111-aaaa", "MIG-22222222-bbbb"]


def test_no_counter_gpu_integrates_power(fake_nvml_libs: Libs, nvml_state: State) -> None:
    """Pre-Volta GPU: trapezoid integration of power, marked approximate."""
    st: dict[str, object] = {
        "count": 2,
        "dev0.energy_mj": 0,
        "dev1.energy_error": NOT_SUPPORTED,
        "dev1.power_mw": 100_000,
    }
    nvml_state(st)
    with NvmlMeter(library_path=fake_nvml_libs["A"], power_sample_interval_s=HUGE) as m:
        assert m.domains == ("gpu:0", "gpu:1")
        b = m._boards[1]
        t0 = b.last_t
        m._sample_power()  # 100 W constant
        t1 = b.last_t
        nvml_state({**st, "dev1.power_mw": 300_000})
        r = m.read()  # trapezoid: 100 W over (t1-t0), then (100+300)/2 W over (t_read-t1)
        expected = 100.0 * (t1 - t0) + 200.0 * (r.time_s - t1)
        assert r.joules["gpu:1"] == pytest.approx(expected, rel=1e-9)
        assert r.joules["gpu:1"] > 0
        assert r.approximate_domains == frozenset({"gpu:1"})
        assert not r.estimated and r.joules["gpu:0"] == 0.0
        assert any("approximate: power x time" in n for n in m.describe()["notes"])  # type: ignore[union-attr]


def test_power_sampling_thread_runs(fake_nvml_libs: Libs, nvml_state: State) -> None:
    nvml_state({"dev0.energy_error": NOT_SUPPORTED, "dev0.power_mw": 50_000})
    with NvmlMeter(library_path=fake_nvml_libs["A"], power_sample_interval_s=0.005) as m:
        assert m.update_period_s == pytest.approx(0.1)
        t_start = m._boards[0].last_t
        deadline = time.monotonic() + 10
        while m._boards[0].last_t == t_start:  # the thread takes a sample by itself
            assert time.monotonic() < deadline, "sampling thread never sampled"
            time.sleep(0.002)
        r = m.read()
        assert r.joules["gpu:0"] == pytest.approx(50.0 * (r.time_s - t_start), rel=1e-6)
    assert not m._poller.is_alive()


def test_gpu_without_counter_or_power_is_skipped_with_warning(
    fake_nvml_libs: Libs, nvml_state: State
) -> None:
    nvml_state({"count": 2, "dev1.energy_error": NOT_SUPPORTED, "dev1.power_error": NOT_SUPPORTED})
    with pytest.warns(MeterWarning, match="gpu:1.*no energy counter"):
        m = NvmlMeter(library_path=fake_nvml_libs["A"])
    with m:
        assert m.domains == ("gpu:0",)
        assert any("gpu:1 not measured" in n for n in m.describe()["notes"])  # type: ignore[union-attr]
    nvml_state({"dev0.energy_error": NOT_SUPPORTED, "dev0.power_error": NOT_SUPPORTED})
    with pytest.raises(MeterUnavailableError, match="no selected GPU"):
        NvmlMeter(library_path=fake_nvml_libs["A"])


def test_read_error_is_meter_read_error(fake_nvml_libs: Libs, nvml_state: State) -> None:
    st: dict[str, object] = {"dev0.energy_mj": 5}
    nvml_state(st)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = NvmlMeter(library_path=fake_nvml_libs["A"])
    nvml_state({**st, "dev0.energy_error": GPU_IS_LOST})
    with pytest.raises(MeterReadError, match="gpu:0.*GPU is lost") as ei:
        m.read()
    assert type(ei.value.__cause__).__name__.startswith("NVMLError")
    m.close()
    m.close()
    with pytest.raises(MeterReadError, match="closed"):
        m.read()


def test_power_sampling_error_reported_on_read(fake_nvml_libs: Libs, nvml_state: State) -> None:
    st: dict[str, object] = {"dev0.energy_error": NOT_SUPPORTED, "dev0.power_mw": 1000}
    nvml_state(st)
    with NvmlMeter(library_path=fake_nvml_libs["A"], power_sample_interval_s=HUGE) as m:
        nvml_state({**st, "dev0.power_error": GPU_IS_LOST})
        with pytest.raises(MeterReadError):
            m._sample_power()
        nvml_state(st)
        with pytest.raises(MeterReadError, match="sampling thread failed"):
            m.read()


def test_bad_arguments() -> None:
    for bad in ([-1], [0, 0], "0", [True], [1.0]):
        with pytest.raises(ConfigurationError, match="NvmlMeter\\(devices="):
            NvmlMeter(devices=bad)  # type: ignore[arg-type]
    for bad_s in (0, -0.1, "0.1"):
        with pytest.raises(ConfigurationError, match="power_sample_interval_s"):
            NvmlMeter(power_sample_interval_s=bad_s)  # type: ignore[arg-type]
