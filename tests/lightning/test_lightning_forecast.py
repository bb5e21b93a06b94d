"""The whole-run forecast from the Lightning EnergyMonitor: plan, projection key, summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _wattwise_lit import Api, loader, make_module

from wattwise.testing import FakeMeter


def test_fit_logs_the_projection_and_keeps_the_forecast_in_the_summary(
        lit_api: Api, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary_path = tmp_path / "s.json"
    mon = lit_api.EnergyMonitor(meters=[FakeMeter(("cpu:package-0",), joules_per_read=1.0)],
                                summary_path=summary_path, hardware="butter-e-cpu")
    trainer = lit_api.trainer(tmp_path, callbacks=[mon], max_epochs=3, limit_train_batches=3)
    trainer.fit(make_module(lit_api), loader(20), loader(8))
    assert "forecast for this fit (3 epochs x 12 samples)" in capsys.readouterr().out
    fc = json.loads(summary_path.read_text())["forecast"]
    assert fc["planned_epochs"] == 3 and fc["samples_per_epoch"] == 12  # 3 batches of 4
    assert fc["model"]["train_joules"] == pytest.approx(fc["model"]["joules_per_sample"] * 36)
    assert [p["after_epoch"] for p in fc["projections"]] == [0, 1, 2]
    last = fc["projections"][-1]["run_joules"]
    assert last == pytest.approx(fc["final"]["measured_run_joules"])  # nothing left to project
    assert fc["final"]["model_error"] is not None
    assert trainer.callback_metrics["energy/projected_run_joules"].item() == pytest.approx(last)
    assert trainer.logged_metrics["energy/projected_run_joules"].item() == pytest.approx(last)


def test_max_steps_leaves_the_plan_unknown(lit_api: Api, tmp_path: Path) -> None:
    mon = lit_api.EnergyMonitor(meters=[FakeMeter(("cpu:package-0",), joules_per_read=1.0)],
                                summary_path=tmp_path / "s.json", print_summary=False)
    trainer = lit_api.trainer(tmp_path, callbacks=[mon], max_epochs=-1, max_steps=6)
    trainer.fit(make_module(lit_api), loader(12))
    fc = json.loads((tmp_path / "s.json").read_text())["forecast"]
    assert fc["planned_epochs"] is None and fc["model"] is None and fc["projections"] == []
    assert "energy/projected_run_joules" not in trainer.callback_metrics
