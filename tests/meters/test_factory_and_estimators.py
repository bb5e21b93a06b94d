"""open_meters, CodeCarbonMeter (for real, offline) and PyRaplMeter (unavailable here)."""

from __future__ import annotations

import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from meter_test_helpers import write_zone

from wattwise.errors import ConfigurationError, MeterUnavailableError, MeterWarning
from wattwise.meters import Meter, open_meters
from wattwise.meters.codecarbon import CodeCarbonMeter, carbon_intensity_g_per_kwh
from wattwise.meters.rapl import RaplMeter
from wattwise.testing import FakeMeter

Libs = dict[str, Path]
State = Callable[[dict[str, object]], Path]


@pytest.fixture
def rapl_root(tmp_path: Path) -> Path:
    root = tmp_path / "powercap"
    write_zone(root / "intel-rapl:0", "package-0")
    return root


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Record (and refuse) every outgoing connection attempt."""
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts


def _close(meters: list[Meter]) -> None:
    for m in meters:
        m.close()


def test_auto_opens_every_real_counter(
    fake_nvml_libs: Libs, nvml_state: State, rapl_root: Path
) -> None:
    nvml_state({"dev0.energy_mj": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # everything available: no warning at all
        meters, unavailable = open_meters(
            "auto", rapl_root=rapl_root, nvml_library_path=fake_nvml_libs["A"]
        )
    try:
        assert [m.name for m in meters] == ["nvml", "rapl"]
        assert unavailable == {}
        assert not any(m.estimated for m in meters)
    finally:
        _close(meters)


def test_auto_one_warning_with_reasons_keeps_what_works(
    fake_nvml_libs: Libs, nvml_state: State, rapl_root: Path, tmp_path: Path
) -> None:
    nvml_state({"init_error": 9})
    with pytest.warns(MeterWarning) as rec:
        meters, unavailable = open_meters(
            "auto", rapl_root=rapl_root, nvml_library_path=fake_nvml_libs["A"]
        )
    try:
        assert [m.name for m in meters] == ["rapl"]
        assert set(unavailable) == {"nvml"} and "driver is not loaded" in unavailable["nvml"]
        assert len([w for w in rec if issubclass(w.category, MeterWarning)]) == 1
        assert "nvml" in str(rec[0].message) and "codecarbon" not in str(rec[0].message)
    finally:
        _close(meters)


def test_auto_falls_back_to_codecarbon_estimate(
    fake_nvml_libs: Libs, nvml_state: State, tmp_path: Path, no_network: list[object]
) -> None:
    nvml_state({"init_error": 9})
    with pytest.warns(MeterWarning) as rec:
        meters, unavailable = open_meters(
            "auto", rapl_root=tmp_path / "none", nvml_library_path=fake_nvml_libs["A"]
        )
    try:
        assert [m.name for m in meters] == ["codecarbon"]
        assert meters[0].estimated
        assert set(unavailable) == {"nvml", "rapl"}
        msgs = [str(w.message) for w in rec if issubclass(w.category, MeterWarning)]
        assert len(msgs) == 1
        assert "nvml:" in msgs[0] and "rapl:" in msgs[0] and "ESTIMATE" in msgs[0]
    finally:
        _close(meters)
    assert no_network == []


def test_auto_non_zero_rank_skips_node_meters(
    fake_nvml_libs: Libs, nvml_state: State, rapl_root: Path
) -> None:
    nvml_state({})
    meters, unavailable = open_meters(
        "auto", node_meters=False, rapl_root=rapl_root, nvml_library_path=fake_nvml_libs["A"]
    )
    try:
        assert [m.name for m in meters] == ["nvml"]
        assert "node_meters=False" in unavailable["rapl"]
    finally:
        _close(meters)


def test_named_meters_raise_and_pass_through(
    fake_nvml_libs: Libs, nvml_state: State, rapl_root: Path, tmp_path: Path
) -> None:
    fake = FakeMeter()
    meters, unavailable = open_meters(["rapl", fake], rapl_root=rapl_root)
    try:
        assert isinstance(meters[0], RaplMeter) and meters[1] is fake and unavailable == {}
    finally:
        meters[0].close()
    meters, _ = open_meters("rapl", rapl_root=rapl_root)  # one name as a string
    _close(meters)
    nvml_state({"init_error": 9})
    with pytest.raises(MeterUnavailableError, match="driver is not loaded"):
        open_meters(["rapl", "nvml"], rapl_root=rapl_root, nvml_library_path=fake_nvml_libs["A"])
    nvml_state({})
    meters, unavailable = open_meters(
        ["rapl", "nvml"],
        node_meters=False,
        rapl_root=tmp_path / "absent",
        nvml_library_path=fake_nvml_libs["A"],
    )
    try:
        assert [m.name for m in meters] == ["nvml"] and "rapl" in unavailable
    finally:
        _close(meters)


def test_bad_specs() -> None:
    with pytest.raises(
        ConfigurationError, match="unknown meter 'nvidia'.*nvml, rapl, pyrapl, codecarbon"
    ):
        open_meters(["nvidia"])
    with pytest.raises(ConfigurationError, match="'auto' cannot be combined"):
        open_meters(["auto", "rapl"])
    with pytest.raises(ConfigurationError, match="listed twice"):
        open_meters(["rapl", "rapl"])
    with pytest.raises(ConfigurationError, match="spec="):
        open_meters(42)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="node_meters"):
        open_meters("auto", node_meters="no")  # type: ignore[arg-type]


def test_codecarbon_meter_for_real_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network: list[object]
) -> None:
    monkeypatch.chdir(tmp_path)
    with CodeCarbonMeter(country_iso_code="fra") as m:
        assert m.estimated and m.scope == "node" and m.name == "codecarbon"
        assert "cpu:estimated" in m.domains and "ram:estimated" in m.domains
        r0 = m.read()
        x = 0
        for i in range(2_000_000):  # some CPU work
            x += i
        r1 = m.read()
        assert r1.estimated
        assert r0.total_joules == 0.0  # joules since the first read
        assert r1.total_joules > 0
        assert all(r1.joules[d] >= r0.joules[d] for d in m.domains)
        assert m.emissions_g > 0
        assert any("ESTIMATE" in n for n in m.describe()["notes"])  # type: ignore[union-attr]
        assert m.describe()["country_iso_code"] == "FRA"
    assert list(tmp_path.iterdir()) == []  # no CSV, no lock file
    assert no_network == []


def test_carbon_intensity_helper() -> None:
    fra = carbon_intensity_g_per_kwh("FRA")
    assert 10 < fra < 200  # nuclear-heavy grid
    assert carbon_intensity_g_per_kwh("pol") > fra
    with pytest.raises(ConfigurationError, match="'XYZ'.*codecarbon's offline data"):
        carbon_intensity_g_per_kwh("XYZ")
    with pytest.raises(ConfigurationError, match="alpha-3"):
        carbon_intensity_g_per_kwh("FR")
    with pytest.raises(ConfigurationError, match="country_iso_code='XYZ'"):
        CodeCarbonMeter(country_iso_code="XYZ")
    with pytest.raises(ConfigurationError, match="measure_power_secs"):
        CodeCarbonMeter(measure_power_secs=0)


def test_pyrapl_unavailable_here_and_root_logger_untouched() -> None:
    code = (
        "import logging, sys\n"
        "from wattwise.errors import MeterUnavailableError\n"
        "from wattwise.meters.pyrapl import PyRaplMeter\n"
        "try:\n"
        "    PyRaplMeter()\n"
        "except MeterUnavailableError as e:\n"
        "    print('UNAVAILABLE', e)\n"
        "else:\n"
        "    print('OPENED')\n"
        "print('ROOT_HANDLERS', len(logging.getLogger().handlers))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert "ROOT_HANDLERS 0" in proc.stdout, proc.stdout + proc.stderr
    if Path("/sys/class/powercap/intel-rapl").exists():
        pytest.skip("RAPL present: pyRAPL may open here")
    assert "UNAVAILABLE PyRaplMeter()" in proc.stdout
    assert "Fix:" in proc.stdout
    assert "You need to install" not in proc.stderr  # pyRAPL's import chatter silenced
