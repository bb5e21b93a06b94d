"""The whole-run forecast from the Keras EnergyMonitor: the projection key and the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from wattwise_keras_helpers import BATCH, N_TRAIN, N_VAL, arrays, tiny_model

from wattwise.testing import FakeMeter

keras = pytest.importorskip("keras")
from wattwise.keras import EnergyMonitor

pytestmark = pytest.mark.keras


def test_projection_in_history_and_forecast_in_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    mon = EnergyMonitor([FakeMeter(("gpu:0",), joules_per_read=2.0)], summary_path=path,
                        print_summary=False, hardware="butter-e-cpu")
    x, y = arrays(N_TRAIN)
    vx, vy = arrays(N_VAL, seed=1)
    hist = tiny_model().fit(x, y, batch_size=BATCH, epochs=3, verbose=0, callbacks=[mon],
                            validation_data=(vx, vy)).history
    fc = json.loads(path.read_text())["forecast"]
    assert fc["planned_epochs"] == 3 and fc["samples_per_epoch"] == N_TRAIN
    projected = hist["energy_projected_run_joules"]
    assert projected == pytest.approx([p["run_joules"] for p in fc["projections"]])
    # every epoch moves the same joules here, so the first projection is already exact
    assert projected[0] == pytest.approx(fc["final"]["measured_run_joules"])
    assert fc["final"]["first_projection_error"] == pytest.approx(0.0, abs=1e-9)
    assert fc["model"] is not None and fc["model"]["epochs"] == 3
