"""Real input files for the CLI's bad-input and fuzz tests: run summaries written by a real
EnergyTracker driven by a FakeMeter, a ``wattwise sweep`` folder, a BUTTER-style CSV, a
coefficients file, and files that are none of these."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from wattwise.cli.main import main
from wattwise.testing import FakeMeter
from wattwise.tracker import EnergyTracker


def write_tracked_run(path: Path, name: str = "fuzz", advice: dict[str, Any] | None = None,
                      epochs: int = 2) -> Path:
    """A v2 run summary: ``epochs`` epochs of train (3 batches of 32) and validate (1 of 16),
    the fake counter moving 10 J and 2 J per batch."""
    meter = FakeMeter(("cpu:package-0",), name="fake")
    tracker = EnergyTracker([meter], summary_path=path, run_name=name, min_window_s=0.0)
    tracker.start()
    if advice is not None:
        tracker.set_advice(advice)
    for epoch in range(epochs):
        tracker.start_window("train", epoch)
        for _ in range(3):
            tracker.add_batch(samples=32)
            meter.advance(10.0)
        tracker.end_window()
        tracker.start_window("validate", epoch)
        tracker.add_batch(samples=16)
        meter.advance(2.0)
        tracker.end_window()
        tracker.end_epoch()
    tracker.finish("completed")
    return path


def mlp_advice() -> dict[str, Any]:
    """The JSON advice the callbacks store, for a 64-32-10 MLP on the paper's CPU node."""
    from wattwise.hardware import detect_hierarchy
    from wattwise.model.advise import advice_from_widths

    hierarchy = detect_hierarchy("butter-e-cpu")
    return advice_from_widths([32, 10], 64, 32, hierarchy, n_samples=96).to_json()


@dataclass(frozen=True)
class Inputs:
    """Paths of real files, made once per session (tests copy before they change one)."""

    root: Path
    summary: Path  # a v2 run summary, no advice
    advised: Path  # a v2 run summary with advice (fit uses it)
    sweep_summary: Path  # a run summary without advice, listed in the sweep.json next to it
    sweep_index: Path
    butter_csv: Path
    coefficients: Path
    binary: Path  # PNG header and bytes that are not UTF-8
    missing: Path
    folder: Path


@pytest.fixture(scope="session")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Inputs:
    from wattwise.model.coefficients import preset
    from wattwise.sizing import save_coefficients

    root = tmp_path_factory.mktemp("cli-inputs")
    summary = write_tracked_run(root / "run" / "summary.json", "plain")
    advised = write_tracked_run(root / "advised.json", "advised", advice=mlp_advice())
    sweep = root / "sweep"
    sweep_summary = write_tracked_run(sweep / "size-000002730.json", "sweep-rectangle-2730")
    sweep_index = sweep / "sweep.json"
    sweep_index.write_text(json.dumps({
        "schema": "wattwise.sweep/1", "n_in": 64, "n_out": 10, "shape": "rectangle",
        "depth": 2, "epochs": 2, "batch_size": 32, "estimated": False, "energy": "measured",
        "points": [{"target_size": 2730, "ntp": 2730, "widths": [40, 10],
                    "summary": sweep_summary.name}],
    }), encoding="utf-8")
    butter_csv = root / "butter.csv"
    butter_csv.write_text("dataset,shape,depth,size,is_gpu,energy\n"
                          "201_pol,rectangle,3,1024,0,120.5\n"
                          "201_pol,rectangle,3,16384,0,340.0\n"
                          "201_pol,trapezoid,4,65536,0,900.25\n", encoding="utf-8")
    coefficients = save_coefficients(preset("cpu"), root / "coefficients.json")
    binary = root / "image.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\xfd" + bytes(range(256)))
    (root / "folder").mkdir()
    return Inputs(root, summary, advised, sweep_summary, sweep_index, butter_csv, coefficients,
                  binary, root / "missing.json", root / "folder")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_cli(argv: Sequence[str]) -> Result:
    """``main(argv)`` in this process; stdout and stderr captured, SystemExit turned into its code
    (anything else propagates: a traceback is a failure)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return Result(code, out.getvalue(), err.getvalue())


def assert_one_line_error(result: Result, command: str, *needles: str) -> str:
    """Exit code 2, no traceback, and the last stderr line is ``wattwise <command>: error: ...``
    holding every needle; returns that line."""
    assert result.code == 2, (result.code, result.err[-2000:])
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert lines, "no message on stderr"
    line = lines[-1]
    assert line.startswith(f"wattwise {command}: error: "), result.err
    for needle in needles:
        assert needle in line, (needle, line)
    return line


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


@pytest.fixture(autouse=True)
def _empty_config_dir(tmp_path_factory: pytest.TempPathFactory,
                      monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every CLI test sees an empty wattwise config folder: a calibration stored on the machine
    that runs the tests (``wattwise calibrate``) must not change what they predict. (tox sets
    ``WATTWISE_CONFIG_DIR`` for the other folders; a ``tests/conftest.py`` would put ``tests/``
    on ``sys.path``, where ``tests/keras`` would shadow the keras package.)"""
    path = tmp_path_factory.mktemp("wattwise-config")
    monkeypatch.setenv("WATTWISE_CONFIG_DIR", str(path))
    return path
