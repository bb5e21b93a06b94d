"""``wattwise probe`` against a fake RAPL sysfs tree written under a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wattwise.cli.main import main

FAKE_WATTS = 50.0


@pytest.fixture
def rapl_root(tmp_path: Path) -> Iterator[Path]:
    """A powercap tree with one package zone whose counter moves at FAKE_WATTS watts."""
    root = tmp_path / "powercap"
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    energy = zone / "energy_uj"
    energy.write_text("1000000\n")
    stop = threading.Event()
    t0 = time.monotonic()

    def writer() -> None:  # the counter follows the clock, like a CPU drawing FAKE_WATTS
        while not stop.is_set():
            uj = 1_000_000 + int((time.monotonic() - t0) * FAKE_WATTS * 1e6)
            with open(energy, "r+") as f:
                f.write(f"{uj}\n")
            time.sleep(0.002)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        yield root
    finally:
        stop.set()
        th.join()


def test_probe_json_reads_fake_rapl(rapl_root: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    missing_lib = tmp_path / "no-such-libnvidia-ml.so.1"
    rc = main(["probe", "--json", "--seconds", "0.5", "--rapl-root", str(rapl_root),
               "--nvml-library", str(missing_lib), "--meters", "rapl", "nvml"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    rapl = result["meters"]["rapl"]
    assert rapl["available"] is True, rapl
    assert rapl["estimated"] is False
    assert rapl["domains"] == ["cpu:package-0"]
    assert rapl["watts"]["cpu:package-0"] == pytest.approx(FAKE_WATTS, rel=0.2)
    nvml = result["meters"]["nvml"]
    assert nvml["available"] is False
    assert nvml["reason"]  # says why
    assert set(result) >= {"meters", "caches", "interval_s"}


def test_probe_no_powercap_says_why_and_fix(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """No powercap folder (a VM, like CI): 'not available', the reason and a fix line."""
    rc = main(["probe", "--seconds", "0.1", "--rapl-root", str(tmp_path / "absent"),
               "--meters", "rapl"])
    assert rc == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.strip().startswith("rapl"))
    assert "not available" in line and str(tmp_path / "absent") in line
    fix = out.splitlines()[out.splitlines().index(line) + 1]
    assert fix.strip().startswith("fix:") and len(fix.strip()) > len("fix: ")
    assert "no meter is readable" in out


def test_probe_root_only_energy_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unreadable energy_uj (the root-only rule) is reported with a fix, not a traceback."""
    locked = tmp_path / "locked"
    zone = locked / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    (zone / "energy_uj").write_text("1\n")
    (zone / "energy_uj").chmod(0o000)
    try:
        import os

        if os.access(zone / "energy_uj", os.R_OK):
            pytest.skip("running as root: permissions are not enforced")
        rc = main(["probe", "--seconds", "0.2", "--rapl-root", str(locked), "--meters", "rapl"])
    finally:
        (zone / "energy_uj").chmod(0o644)
    assert rc == 0
    out = capsys.readouterr().out
    assert "rapl" in out and "not available" in out and "fix:" in out
    assert "no meter is readable" in out


def test_probe_text_shows_watts(rapl_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "--seconds", "0.3", "--rapl-root", str(rapl_root),
                 "--meters", "rapl"]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if "cpu:package-0" in l)
    watts = float(line.split()[1])
    assert watts == pytest.approx(FAKE_WATTS, rel=0.2)
    assert "wattwise will measure with: rapl" in out
    assert "CPU cache hierarchy" in out


@pytest.mark.parametrize("argv, needle", [
    (["probe", "--meters", "joulemeter"], "--meters: unknown meter 'joulemeter'"),
    (["probe", "--seconds", "-1"], "--seconds -1.0"),
])
def test_bad_input_one_line_error(argv: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "wattwise", *argv],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["probe", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--rapl-root" in out
