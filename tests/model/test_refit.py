"""Refitting the coefficients: recovers known coefficients, cross-validates on BUTTER-E."""

from __future__ import annotations

import pytest

from wattwise.errors import ConfigurationError
from wattwise.model.butter_e import run_feature_row
from wattwise.model.coefficients import preset
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
    assert fit.mean_abs_error <= mean_abs_error(X, E, preset("gpu")) + 1e-9  # at least as good
    assert fit.coefficients.n_runs == 102 and fit.coefficients.fit_error == pytest.approx(fit.mean_abs_error)


def test_refit_recovers_synthetic_coefficients(read_csv, butter_dir):
    X, _ = _sample(read_csv, butter_dir, True)
    truth = preset("gpu")
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
