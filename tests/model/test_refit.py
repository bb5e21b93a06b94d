"""Refitting the coefficients: recovers known coefficients, cross-validates on BUTTER-E."""

from __future__ import annotations

import pytest

from wattwise.errors import ConfigurationError
from wattwise.model.butter_e import run_feature_row
from wattwise.model.coefficients import DEFAULT_PRESETS, PRESET_NAMES, preset
from wattwise.model.energy import predict
from wattwise.model.fit import cross_validate, fit_coefficients, mean_abs_error


def _sample(read_csv, butter_dir, gpu):
    rows = [r for r in read_csv(butter_dir / "runs_sample.csv") if r["is_gpu"] == ("1" if gpu else "0")]
    X = [run_feature_row(r["dataset"], r["shape"], int(r["depth"]), int(r["size"]),
                         "gpu" if gpu else "cpu") for r in rows]
    E = [float(r["std_energy"]) for r in rows]
    return X, E


def test_cross_validated_refit_gpu_within_4_percent(read_csv, butter_dir):
    X, E = _sample(read_csv, butter_dir, True)
    assert len(X) == 102
    cv = cross_validate(X, E, "gpu", folds=5)
    assert cv <= 0.04
    fit = fit_coefficients(X, E, "gpu")
    assert all(v >= 0 for v in fit.coefficients.values)
    assert fit.mean_abs_error <= mean_abs_error(X, E, preset("paper-gpu")) + 1e-9  # at least as good
    assert fit.coefficients.n_runs == 102 and fit.coefficients.fit_error == pytest.approx(fit.mean_abs_error)


def test_refit_recovers_synthetic_coefficients(read_csv, butter_dir):
    X, _ = _sample(read_csv, butter_dir, True)
    truth = preset("paper-gpu")
    E = [predict(x, truth) for x in X]
    fit = fit_coefficients(X, E, "gpu")
    assert fit.mean_abs_error < 1e-4
    assert fit.coefficients.k_e == pytest.approx(truth.k_e, rel=1e-3)
    assert fit.coefficients.a3 == 0.0 and "a3" not in fit.free  # no GPU L3 column


def test_fit_bad_input():
    with pytest.raises(ConfigurationError, match="measured energy of run 0 is 0.0"):
        fit_coefficients([[1.0] * 12], [0.0], "gpu")
    with pytest.raises(ConfigurationError, match="2 feature rows but 1"):
        fit_coefficients([[1.0] * 12] * 2, [1.0], "gpu")
    with pytest.raises(ConfigurationError, match="folds=1"):
        cross_validate([[1.0] * 12] * 3, [1.0] * 3, "gpu", folds=1)


def test_presets_by_name_and_defaults():
    assert set(PRESET_NAMES) == {"cpu", "gpu", "paper-cpu", "paper-gpu", "refit-cpu", "refit-gpu"}
    for kind in ("cpu", "gpu"):
        paper, refit = preset(f"paper-{kind}"), preset(f"refit-{kind}")
        assert paper.source.startswith(f"paper-{kind}") and refit.source.startswith(f"refit-{kind}")
        assert paper.cv_error is not None and refit.cv_error is not None
        best = refit if refit.cv_error < paper.cv_error else paper
        assert preset(kind) == best == preset(DEFAULT_PRESETS[kind])
        assert paper.hardware == refit.hardware == kind
    assert preset("paper-gpu").values[1] == pytest.approx(3080 / 3000)  # the paper's, unchanged
    with pytest.raises(ConfigurationError, match="'tpu'.*paper-cpu"):
        preset("tpu")


def test_stored_refit_matches_a_fresh_refit(read_csv, butter_dir):
    """The REFIT constants are what fit_coefficients gives on the run sample today (< 10 s)."""
    for gpu in (True, False):
        kind = "gpu" if gpu else "cpu"
        X, E = _sample(read_csv, butter_dir, gpu)
        fresh = fit_coefficients(X, E, kind)
        stored = preset(f"refit-{kind}")
        for x in X:  # same predictions (coefficients of near-empty columns may wander)
            assert predict(x, stored) == pytest.approx(predict(x, fresh.coefficients), rel=1e-3)
        assert stored.fit_error == pytest.approx(fresh.mean_abs_error, abs=1e-4)
        assert stored.cv_error == pytest.approx(cross_validate(X, E, kind, folds=5), abs=1e-4)
        assert stored.cv_error < mean_abs_error(X, E, preset(f"paper-{kind}"))
        assert preset(f"paper-{kind}").cv_error == pytest.approx(
            mean_abs_error(X, E, preset(f"paper-{kind}")), abs=1e-4)
