"""The Keras files in ``examples/`` and ``wattwise demo --framework keras`` run as they are.

Keras-marked: tox runs this module once per backend (KERAS_BACKEND=tensorflow|torch|jax).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.keras

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
KERAS = sorted(EXAMPLES.glob("*keras*.py"))


def _env() -> dict[str, str]:
    return dict(os.environ, WATTWISE_EXAMPLE_FAST="1", TF_CPP_MIN_LOG_LEVEL="3")


@pytest.mark.parametrize("path", KERAS, ids=[p.stem for p in KERAS])
def test_keras_example_runs(path: Path, tmp_path: Path) -> None:
    pytest.importorskip("keras")
    proc = subprocess.run([sys.executable, str(path), "--epochs", "1"], cwd=tmp_path,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    assert list(tmp_path.rglob("*.json")), f"{path.name} wrote no run summary"


def test_demo_keras_one_epoch(tmp_path: Path) -> None:
    pytest.importorskip("keras")
    pytest.importorskip("sklearn")
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "wattwise", "demo", "--framework", "keras", "--epochs", "1",
         "--out", str(out)],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "completed"
    assert summary["epochs"][0]["phases"]["train"]["samples"] == 1438
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert f"tensorboard --logdir {out / 'tensorboard'}" in proc.stdout
    if summary["estimated"]:
        assert "ESTIMATES" in proc.stdout
