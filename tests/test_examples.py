"""Each non-Keras file in ``examples/`` runs as it is, as a subprocess, with small settings.

Examples accept ``--epochs`` (we pass 1) and honour ``WATTWISE_EXAMPLE_FAST=1``. They run in a
temporary working directory so whatever they write lands there. The Keras examples are run by
``tests/test_examples_keras.py`` (once per Keras backend).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NON_KERAS = sorted(p for p in EXAMPLES.glob("*.py") if "keras" not in p.name)


def run_example(path: Path, cwd: Path, extra_env: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, WATTWISE_EXAMPLE_FAST="1", TF_CPP_MIN_LOG_LEVEL="3",
               **(extra_env or {}))
    return subprocess.run([sys.executable, str(path), "--epochs", "1"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_there_are_examples() -> None:
    assert NON_KERAS, f"no examples found in {EXAMPLES}"


@pytest.mark.parametrize("path", NON_KERAS, ids=[p.stem for p in NON_KERAS])
def test_example_runs(path: Path, tmp_path: Path) -> None:
    if "lightning" in path.name:
        pytest.importorskip("lightning")
    if "transformers" in path.name:
        pytest.importorskip("transformers.trainer_callback")
    proc = run_example(path, tmp_path)
    assert proc.returncode == 0, f"{path.name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr
    # every example reports energy: a table on stdout and a run summary written somewhere
    assert "J/sample" in proc.stdout or "joules" in proc.stdout.lower()
    summaries = list(tmp_path.rglob("*.json"))
    assert summaries, f"{path.name} wrote no run summary under its working directory"
