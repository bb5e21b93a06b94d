"""``wattwise sweep`` with tiny sizes, 1 epoch, measuring from a fake RAPL tree."""

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

pytest.importorskip("lightning")
pytest.importorskip("sklearn")

FAKE_WATTS = 40.0


@pytest.fixture
def rapl_root(tmp_path: Path) -> Iterator[Path]:
    """A powercap tree whose package counter follows the clock at FAKE_WATTS watts."""
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    energy = zone / "energy_uj"
    energy.write_text("0\n")
    stop, t0 = threading.Event(), time.monotonic()

    def writer() -> None:
        while not stop.is_set():
            with open(energy, "r+") as f:
                f.write(f"{int((time.monotonic() - t0) * FAKE_WATTS * 1e6)}\n")
            time.sleep(0.002)

    th = threading.Thread(target=writer, daemon=True)
    th.start()
    try:
        yield tmp_path / "powercap"
    finally:
        stop.set()
        th.join()


def test_sweep_two_sizes_measured(rapl_root: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    from wattwise.model.shapes import network_widths, ntp

    out = tmp_path / "sweep"
    rc = main(["sweep", "--sizes", "300", "3000", "--epochs", "1", "--batch-size", "128",
               "--out", str(out), "--rapl-root", str(rapl_root)])
    assert rc == 0
    index = json.loads((out / "sweep.json").read_text())
    assert index["energy"] == "measured" and index["estimated"] is False
    assert [p["target_size"] for p in index["points"]] == [300, 3000]
    for p in index["points"]:
        widths = network_widths("rectangle", 3, p["target_size"], 64, 10)
        assert p["widths"] == widths and p["ntp"] == ntp(64, widths)
        summary = json.loads((out / p["summary"]).read_text())
        assert summary["status"] == "completed" and summary["estimated"] is False
        assert p["samples"] == 1438
        # the fake counter moves at FAKE_WATTS: J/sample = W x s/sample
        assert p["joules_per_sample"] == pytest.approx(FAKE_WATTS * p["seconds_per_sample"],
                                                       rel=0.25)
    png = out / "sweep.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    assert "mJ/sample" in text and "ESTIMATES" not in text
    assert f"wattwise fit {out}/size-*.json" in text


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "--sizes", "0"], "--sizes: 0"),
    (["sweep", "--min-size", "100", "--max-size", "10"], "--max-size 10"),
    (["sweep", "--points", "0"], "--points 0"),
    (["sweep", "--shape", "pyramid"], "--shape 'pyramid'"),
    (["sweep", "--framework", "keras"], "lightning only"),
])
def test_bad_input_one_line_error(tmp_path: Path, argv: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "wattwise", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattwise sweep: error:"), proc.stderr
    assert needle in lines[0]


def test_log_spaced_sizes() -> None:
    import argparse

    from wattwise.cli.sweep import target_sizes

    ns = argparse.Namespace(sizes=None, min_size=1000, max_size=100000, points=3)
    assert target_sizes(ns) == [1000, 10000, 100000]


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out
