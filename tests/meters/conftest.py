"""Fixtures for meter tests: fake powercap trees and a fake NVML library compiled with gcc."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from meter_test_helpers import write_zone

FAKE_NVML_SRC = Path(__file__).resolve().parent / "fake_nvml" / "fake_nvml.c"


@pytest.fixture
def intel_tree(tmp_path: Path) -> Path:
    """Two Intel packages with core/uncore/dram subzones, an mmio duplicate and psys."""
    root = tmp_path / "powercap"
    for pkg in (0, 1):
        z = write_zone(
            root / f"intel-rapl:{pkg}", f"package-{pkg}", energy_uj=1_000_000 * (pkg + 1)
        )
        write_zone(z / f"intel-rapl:{pkg}:0", "core", energy_uj=500_000)
        write_zone(z / f"intel-rapl:{pkg}:1", "uncore", energy_uj=100_000)
        write_zone(z / f"intel-rapl:{pkg}:2", "dram", energy_uj=2_000_000, max_range_uj=65532610987)
    write_zone(root / "intel-rapl-mmio:0", "package-0", energy_uj=7_000_000)
    write_zone(root / "intel-rapl:2", "psys", energy_uj=9_000_000)
    return root


@pytest.fixture(scope="session")
def fake_nvml_libs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Compile the fake NVML library twice (variants A and B) into a temp folder."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("no C compiler (gcc) to build the fake NVML library")
    out = tmp_path_factory.mktemp("fake_nvml")
    libs: dict[str, Path] = {}
    for variant in ("A", "B"):
        lib = out / f"libfake-nvml-{variant}.so"
        subprocess.run(
            [
                gcc,
                "-shared",
                "-fPIC",
                "-O2",
                f'-DFAKE_VARIANT="{variant}"',
                "-o",
                str(lib),
                str(FAKE_NVML_SRC),
            ],
            check=True,
            capture_output=True,
        )
        libs[variant] = lib
    return libs


@pytest.fixture
def nvml_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Return ``write(**state)`` that writes the fake NVML state file the library reads."""
    path = tmp_path / "fake_nvml_state.txt"
    monkeypatch.setenv("FAKE_NVML_STATE", str(path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def write(lines: dict[str, object]) -> Path:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        tmp.replace(path)
        return path

    return write
