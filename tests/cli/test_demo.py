"""``wattwise demo`` (Lightning) end to end in a subprocess, and its bad-input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from wattwise.cli.main import main
from wattwise.datasets import load_digits


def _wattwise(*argv: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "wattwise", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_load_digits_is_the_real_dataset() -> None:
    d = load_digits()
    assert d.x_train.shape == (1438, 64) and d.x_val.shape == (359, 64)
    assert d.x_train.dtype.name == "float32" and d.y_train.dtype.name == "int64"
    assert 0.0 <= float(d.x_train.min()) and float(d.x_train.max()) == 1.0
    assert sorted(set(d.y_train.tolist())) == list(range(10))
    again = load_digits()
    assert (again.y_val == d.y_val).all()  # deterministic split


def test_demo_lightning_one_epoch(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    pytest.importorskip("sklearn")
    out = tmp_path / "demo"
    proc = _wattwise("demo", "--epochs", "1", "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    train = summary["epochs"][0]["phases"]["train"]
    assert train["samples"] == 1438  # the real sample count, last partial batch included
    assert summary["epochs"][0]["phases"]["validate"]["samples"] == 359
    events = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    stdout = proc.stdout
    assert f"tensorboard --logdir {out / 'tensorboard'}" in stdout
    assert f"wattwise report {out / 'summary.json'}" in stdout
    assert "sizing advice" in stdout and "=> This network" in stdout
    # the per-epoch prediction counts the samples one epoch trains on, not the whole dataset
    assert "per epoch of 1,438 samples" in stdout and "1,797 samples" not in stdout
    # no calibration in this test's config folder: the advice says so, and how to calibrate
    assert "coefficients: uncalibrated: coefficients of" in stdout
    assert "wattwise calibrate --quick" in stdout
    assert "training energy: " in stdout and "the model predicts" in stdout
    assert "after 1 unmeasured warm-up epoch" in stdout
    if summary["estimated"]:
        assert "ESTIMATES" in stdout
    # the summary feeds `wattwise report`
    rep = _wattwise("report", str(out / "summary.json"), cwd=tmp_path)
    assert rep.returncode == 0 and "train" in rep.stdout, rep.stderr
    # the default output folder is relative to the working directory
    assert not (tmp_path / "wattwise_runs").exists()


@pytest.mark.parametrize("argv, needle", [
    (["demo", "--framework", "mxnet"], "--framework 'mxnet'"),
    (["demo", "--epochs", "0"], "--epochs 0"),
    (["demo", "--hidden", "12,x"], "--hidden '12,x'"),
    (["demo", "--meters", "auto", "rapl"], "'auto' cannot be combined"),
    (["demo", "--meters", "wattmeter"], "unknown meter 'wattmeter'"),
])
def test_bad_input_one_line_error(tmp_path: Path, argv: list[str], needle: str) -> None:
    proc = _wattwise(*argv, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattwise demo: error:"), proc.stderr
    assert needle in lines[0]
    assert not (tmp_path / "wattwise_runs").exists()  # nothing created on bad input


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["demo", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "--framework keras" in out
