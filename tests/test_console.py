"""Tests of the console run table."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from wattwise import EnergyTracker
from wattwise.console import format_run_table, measurement_label
from wattwise.summary import read_summary
from wattwise.testing import FakeMeter


def _run(tmp_path: Path, *, estimated: bool = False) -> dict[str, object]:
    gpu = FakeMeter(("gpu:0",), name="nvml", scope="device", estimated=estimated)
    t = EnergyTracker(
        [gpu], run_name="demo", carbon_intensity_g_per_kwh=360.0, summary_path=tmp_path / "run.json"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.start()
    t.start_window("train", 0)
    for _ in range(10):
        t.add_batch(25)
    gpu.advance(500.0)
    t.end_window()
    t.start_window("validate", 0)
    t.add_batch(50)
    t.end_window()
    t.end_epoch()
    return t.finish()


def test_table_rows_and_labels(tmp_path: Path) -> None:
    text = format_run_table(_run(tmp_path))
    lines = text.splitlines()
    assert lines[0] == "wattwise run 'demo': completed, MEASURED by hardware counters (nvml)"
    assert lines[1].split() == ["phase", "joules", "J/sample", "W", "seconds", "samples"]
    train = next(line.split() for line in lines if line.strip().startswith("train"))
    assert train[1] == "500.00" and train[2] == "2.00" and train[-1] == "250"
    val = next(line.split() for line in lines if line.strip().startswith("validate"))
    assert val[1] == "0.00" and val[-1] == "50"  # measured 0 J (no update period), not n/a
    assert any(line.strip().startswith("run") for line in lines)
    assert "CO2: 0.05 g CO2eq at 360.00 g/kWh (argument)" in text
    assert "meter nvml [measured, device]: gpu:0" in text


def test_table_from_file_and_estimates_labelled(tmp_path: Path) -> None:
    _run(tmp_path, estimated=True)
    summary = read_summary(tmp_path / "run.json")
    text = format_run_table(summary)
    assert "ESTIMATED by nvml" in text and "joules (est.)" in text
    assert "MEASURED" not in text


def test_measurement_label_says_how_the_joules_were_obtained(tmp_path: Path) -> None:
    """One label for the table's title and the callbacks' TensorBoard text entry."""
    assert measurement_label(_run(tmp_path / "m")) == "MEASURED by hardware counters (nvml)"
    assert measurement_label(_run(tmp_path / "e", estimated=True)) == (
        "ESTIMATED by nvml (no hardware counter readable)")
    assert measurement_label({}) == "NOT MEASURED (no meter available)"


def test_unknown_values_unavailable_and_dropped_meters() -> None:
    summary = {
        "run_name": None,
        "status": "failed",
        "error": "RuntimeError: boom",
        "estimated": False,
        "meters": [
            {
                "name": "rapl",
                "scope": "node",
                "domains": ["cpu:package-0"],
                "use": "measured",
                "dropped": {"reason": "read failed: MeterReadError: gone"},
            }
        ],
        "unavailable_meters": {"nvml": "no NVIDIA driver (libnvidia-ml.so.1 not found)"},
        "totals": {
            "phases": {
                "train": {
                    "joules": None,
                    "joules_per_sample": None,
                    "watts": None,
                    "seconds": 1.5,
                    "samples": 10,
                }
            }
        },
    }
    text = format_run_table(json.loads(json.dumps(summary)))
    assert "wattwise run: failed" in text and "error: RuntimeError: boom" in text
    train = next(line.split() for line in text.splitlines() if line.strip().startswith("train"))
    assert train == ["train", "n/a", "n/a", "n/a", "1.50", "10"]
    assert "DROPPED: read failed: MeterReadError: gone" in text
    assert "unavailable nvml: no NVIDIA driver" in text


def test_empty_summary_does_not_crash() -> None:
    text = format_run_table({})
    assert "NOT MEASURED" in text
