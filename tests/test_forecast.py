"""The whole-run forecast: the model's at the start, measured projections, the final comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wattwise import EnergyTracker
from wattwise.forecast import Forecast
from wattwise.records import EpochRecord
from wattwise.testing import FakeMeter

ADVICE = {"estimated_joules_per_sample": 0.05,
          "coefficients": {"cv_error": 0.2, "label": "uncalibrated: test preset"}}


def test_model_forecast_is_j_per_sample_times_samples_times_epochs_with_a_band() -> None:
    f = Forecast(3, 10)
    m = f.set_model(ADVICE)
    assert m is not None
    assert m["train_joules"] == pytest.approx(1.5)
    assert (m["train_joules_low"], m["train_joules_high"]) == pytest.approx((1.2, 1.8))
    assert "+/- 20 %" in (f.text() or "") and "3 epochs x 10 samples" in (f.text() or "")


@pytest.mark.parametrize("epochs, samples, advice", [
    (None, 10, ADVICE), (3, 0, ADVICE), (3, 10, None), (3, 10, {"estimated_joules_per_sample": None}),
    (-1, 10, ADVICE), ("many", 10, ADVICE),
])
def test_no_model_forecast_without_a_plan_or_a_prediction(epochs: object, samples: object,
                                                          advice: object) -> None:
    f = Forecast(epochs, samples)
    assert f.set_model(advice) is None  # type: ignore[arg-type]
    assert f.text() is None and f.to_json()["model"] is None


def test_projection_is_measured_so_far_plus_mean_epoch_times_epochs_left() -> None:
    f = Forecast(4, 10)
    ep = EpochRecord(epoch=0, phases={}, joules=2.0, seconds=1.0)
    assert f.project(ep, 1, 2.0) == pytest.approx(2.0 + 2.0 * 3)
    ep1 = EpochRecord(epoch=1, phases={}, joules=4.0, seconds=1.0)
    assert f.project(ep1, 2, 6.0) == pytest.approx(6.0 + 3.0 * 2)
    incomplete = EpochRecord(epoch=2, phases={}, joules=1.0, seconds=1.0, complete=False)
    assert f.project(incomplete, 2, 7.0) is None
    assert f.projected_run_joules == pytest.approx(12.0)  # unknown never replaces known


def test_tracker_forecast_projection_and_final_comparison_in_the_summary(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    tracker = EnergyTracker([FakeMeter(joules_per_read=1.0)], summary_path=str(path))
    tracker.begin_stage("fit")
    tracker.plan_run(3, 10)
    tracker.set_advice(ADVICE)
    projections = []
    for e in range(3):
        tracker.start_window("train", e)
        tracker.add_batch(10)
        tracker.end_epoch()
        projections.append(tracker.projected_run_joules)
    tracker.finish()
    # each train window spans one counter increment: 1 J; after epoch 0, 1 J + 1 J x 2 left
    assert projections == pytest.approx([3.0, 3.0, 3.0])
    fc = json.loads(path.read_text())["forecast"]
    assert fc["model"]["train_joules"] == pytest.approx(1.5)
    assert fc["final"]["measured_train_joules"] == pytest.approx(3.0)
    assert fc["final"]["model_error"] == pytest.approx(-0.5)
    assert fc["final"]["first_projection_error"] == pytest.approx(0.0)
    assert [p["after_epoch"] for p in fc["projections"]] == [0, 1, 2]


def test_an_early_stopped_fit_is_not_compared(tmp_path: Path) -> None:
    tracker = EnergyTracker([FakeMeter(joules_per_read=1.0)], summary_path=None)
    tracker.begin_stage("fit")
    tracker.plan_run(5, 10)
    tracker.set_advice(ADVICE)
    tracker.start_window("train", 0)
    tracker.add_batch(10)
    tracker.end_epoch()
    summary = tracker.finish()
    final = summary["forecast"]["final"]
    assert final["model_error"] is None and "planned epochs" in final["note"]
    assert summary["forecast"]["projections"][0]["run_joules"] == pytest.approx(5.0)


def test_advice_before_the_plan_still_gives_the_model_forecast(capsys: pytest.CaptureFixture[str]) -> None:
    tracker = EnergyTracker([FakeMeter()], summary_path=None)
    tracker.begin_stage("fit")
    tracker.set_advice(ADVICE)
    tracker.plan_run(2, 100, announce=True)
    assert "forecast for this fit (2 epochs x 100 samples)" in capsys.readouterr().out
    assert tracker.summary()["forecast"]["model"]["train_joules"] == pytest.approx(10.0)
    tracker.finish()


def test_no_plan_no_forecast_key_content() -> None:
    tracker = EnergyTracker([FakeMeter()], summary_path=None)
    tracker.begin_stage("fit")
    assert tracker.summary()["forecast"] is None and tracker.projected_run_joules is None
    tracker.finish()
