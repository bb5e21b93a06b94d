"""Cache discovery from a fake sysfs tree in a temp folder; GPU from fake device properties."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from wattwise.errors import ConfigurationError
from wattwise.hardware import apply_overrides, detect_hierarchy, parse_size
from wattwise.model.hierarchy import KiB, MiB


def _cache(root, cpu, idx, level, typ, size, shared):
    d = root / "devices" / "system" / "cpu" / f"cpu{cpu}" / "cache" / f"index{idx}"
    d.mkdir(parents=True)
    (d / "level").write_text(f"{level}\n")
    (d / "type").write_text(f"{typ}\n")
    (d / "size").write_text(f"{size}\n")
    (d / "shared_cpu_list").write_text(f"{shared}\n")


def _fake_sysfs(tmp_path):
    """4 CPUs, 2 cores x 2 hyperthreads... here: 4 cores, L1d/L1i/L2 per core, L3 per 2 cores."""
    root = tmp_path / "sys"
    for cpu in range(4):
        _cache(root, cpu, 0, 1, "Data", "32K", cpu)
        _cache(root, cpu, 1, 1, "Instruction", "64K", cpu)
        _cache(root, cpu, 2, 2, "Unified", "1024K", cpu)
        _cache(root, cpu, 3, 3, "Unified", "16384K", "0-1" if cpu < 2 else "2-3")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\n")
    return root, meminfo


def test_cpu_caches_from_fake_sysfs(tmp_path):
    root, meminfo = _fake_sysfs(tmp_path)
    h = detect_hierarchy("cpu", sysfs_root=root, meminfo_path=meminfo)
    got = [(lv.name, lv.bytes_per_unit, lv.units, lv.coef_level, lv.detected) for lv in h.levels]
    assert got == [
        ("L1", 32 * KiB, 4, 1, True),  # the Instruction cache is left out
        ("L2", 1 * MiB, 4, 2, True),
        ("L3", 16 * MiB, 2, 3, True),
        ("RAM", 16384000 * 1024, 1, 4, True),
    ]
    assert h.kind == "cpu" and "sysfs" in h.notes[0]


def test_auto_without_gpu_uses_sysfs_and_ram_assumed(tmp_path):
    root, _ = _fake_sysfs(tmp_path)
    h = detect_hierarchy("auto", sysfs_root=root, meminfo_path=tmp_path / "nope")
    assert h.kind == "cpu"
    assert h.levels[-1].detected is False
    assert any("assumed" in n for n in h.notes)


def test_cpu_by_name_without_sysfs_raises_and_auto_warns(tmp_path):
    with pytest.raises(ConfigurationError, match="butter-e-cpu"):
        detect_hierarchy("cpu", sysfs_root=tmp_path)
    with pytest.warns(UserWarning, match="could not detect"):
        h = detect_hierarchy("auto", sysfs_root=tmp_path)
    assert h.levels[0].bytes_per_unit == 32 * KiB and any("assumed" in n for n in h.notes)


def test_gpu_from_device_properties():
    props = SimpleNamespace(name="NVIDIA H100", major=9, minor=0, multi_processor_count=132,
                            L2_cache_size=50 * MiB, total_memory=80 * 1024**3)
    h = detect_hierarchy("gpu", gpu_properties=props, n_gpus=2)
    assert [(lv.name, lv.bytes_per_unit, lv.units) for lv in h.levels] == [
        ("L1", 256 * KiB, 264), ("L2", 50 * MiB, 2), ("VRAM", 80 * 1024**3, 2)]
    assert h.levels[0].detected is False and h.levels[1].detected is True
    assert [lv.coef_level for lv in h.levels] == [1, 2, 4]


def test_presets_overrides_and_errors():
    assert detect_hierarchy("butter-e-cpu").levels[2].bytes_per_unit == int(24.75 * MiB)
    h = apply_overrides(detect_hierarchy("butter-e-gpu"), {"L2": "40M", "L1": (64 * KiB, 10)})
    assert h.levels[1].bytes_per_unit == 40 * MiB and h.levels[1].source == "user override"
    assert (h.levels[0].bytes_per_unit, h.levels[0].units) == (64 * KiB, 10)
    h3 = apply_overrides(detect_hierarchy("butter-e-gpu"), {"L3": "8M"})
    assert [lv.name for lv in h3.levels] == ["L1", "L2", "L3", "VRAM"]
    with pytest.raises(ConfigurationError, match="hardware='tpu'"):
        detect_hierarchy("tpu")
    with pytest.raises(ConfigurationError, match="L9x"):
        apply_overrides(h, {"L9x": 1})
    assert parse_size("48K") == 48 * KiB and parse_size("2M") == 2 * MiB
