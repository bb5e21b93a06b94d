"""Regression tests of the Keras EnergyMonitor's run state: the final status of a run that
raises (with the monitor as a context manager, and in a script that dies of the error or
catches it), and which meters a second worker on a node uses and leaves open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from wattwise_keras_helpers import BATCH, N_TRAIN, N_VAL, arrays, tiny_model

import wattwise
from wattwise.errors import MeterReadError
from wattwise.testing import FakeMeter

keras = pytest.importorskip("keras")
from wattwise.keras import EnergyMonitor

pytestmark = pytest.mark.keras

J = 2.0  # FakeMeter joules_per_read: every window (one read at start, one at end) moves J


def _fit(monitor: Any, epochs: int = 2, callbacks: list[Any] | None = None) -> Any:
    x, y = arrays(N_TRAIN)
    return tiny_model().fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        verbose=0,
        validation_data=arrays(N_VAL, seed=1),
        callbacks=[monitor, *(callbacks or [])],
    )


def _monitor(meters: list[Any], **kw: Any) -> EnergyMonitor:
    kw.setdefault("print_summary", False)
    kw.setdefault("advice", False)
    return EnergyMonitor(meters, **kw)


class Boom(keras.callbacks.Callback):
    """Raises RuntimeError("boom") at the end of epoch 1 (listed after the monitor)."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if epoch == 1:
            raise RuntimeError("boom")


def test_context_manager_records_the_failure(tmp_path: Path) -> None:
    """The final summary of a fit that raised, with the monitor as a context manager, says
    "failed" and names the error - at the top and in the fit stage's entry (schema v2)."""
    path = tmp_path / "s.json"
    mon = _monitor([FakeMeter(("gpu:0",), joules_per_read=J)], summary_path=path)
    with pytest.raises(RuntimeError, match="boom"), mon:
        _fit(mon, epochs=3, callbacks=[Boom()])
    s = json.loads(path.read_text())
    assert s["status"] == "failed"
    assert "RuntimeError" in s["error"] and "boom" in s["error"]
    (stage,) = s["stages"]
    assert stage["stage"] == "fit" and stage["status"] == "failed"
    assert "RuntimeError" in stage["error"] and "boom" in stage["error"]


SCRIPT = textwrap.dedent(
    """
    import sys

    import keras
    import numpy as np

    from wattwise.keras import EnergyMonitor
    from wattwise.testing import FakeMeter


    class Boom(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("boom")


    def main(summary_path, catch):
        rng = np.random.default_rng(0)
        x, y = rng.random((10, 3), dtype=np.float32), rng.random((10, 2), dtype=np.float32)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer="sgd", loss="mse")
        monitor = EnergyMonitor([FakeMeter(("gpu:0",), joules_per_read=1.0)],
                                summary_path=summary_path, print_summary=False, advice=False)
        try:
            model.fit(x, y, batch_size=4, epochs=3, verbose=0, callbacks=[monitor, Boom()])
        except RuntimeError:
            if not catch:
                raise
            print("caught the error; exiting normally")


    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2] == "catch")
    """
)


def _run_script(
    tmp_path: Path, mode: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """Run SCRIPT with this interpreter, this wattwise and this Keras backend."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    path = tmp_path / "s.json"
    src = str(Path(wattwise.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "KERAS_BACKEND": keras.backend.backend(),
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p),
    }
    proc = subprocess.run(
        [sys.executable, str(script), str(path), mode],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert path.exists(), proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc, json.loads(path.read_text())


def test_uncaught_error_in_a_script_writes_failed_summary(tmp_path: Path) -> None:
    """Bug: a script killed by an uncaught training error left the summary "running" or, via the
    exit handler, "interrupted" with error null; it must be "failed" with the error."""
    proc, s = _run_script(tmp_path, "raise")
    assert proc.returncode != 0 and "RuntimeError: boom" in proc.stderr, proc.stderr[-4000:]
    assert s["status"] == "failed", s["status"]
    assert s["error"] is not None and "RuntimeError: boom" in s["error"]


def test_caught_error_in_a_script_never_leaves_summary_running(tmp_path: Path) -> None:
    """Bug: a script that caught the training error (monitor local to main()) and exited
    normally left the summary with status "running" forever."""
    proc, s = _run_script(tmp_path, "catch")
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert s["status"] in ("failed", "interrupted"), s["status"]


def test_second_worker_skips_and_leaves_open_a_node_meter_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: on local rank 1 a node-scoped Meter instance (RAPL) was read like on rank 0 - the
    node counted once per worker - and closed at the end although the user owns it."""
    from wattwise.meters import RaplMeter

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{5_000_000:020d}\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")

    class MoveRapl(keras.callbacks.Callback):
        """Moves the node counter by 100 J per training batch (same inode, fixed width)."""

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            uj = int((zone / "energy_uj").read_text()) + 100_000_000
            fd = os.open(zone / "energy_uj", os.O_WRONLY)
            try:
                os.pwrite(fd, f"{uj:020d}\n".encode(), 0)
            finally:
                os.close(fd)

    rapl = RaplMeter(root=tmp_path / "powercap")
    gpu = FakeMeter(("gpu:0",), scope="device", joules_per_read=J)
    try:
        mon = _monitor([rapl, gpu], summary_path=tmp_path / "run.json")
        hist = _fit(mon, epochs=1, callbacks=[MoveRapl()]).history
        try:
            rapl.read()
            closed_by_wattwise = None
        except MeterReadError as e:
            closed_by_wattwise = e
    finally:
        rapl.close()

    assert hist["energy_joules"] == [J]  # the device meter alone
    s = json.loads((tmp_path / "run.rank1.json").read_text())
    assert [m["name"] for m in s["meters"]] == ["fake"]
    train = s["totals"]["phases"]["train"]
    assert "gpu:0" in train["joules_by_domain"]
    assert "cpu:package-0" not in train["joules_by_domain"]
    assert closed_by_wattwise is None
