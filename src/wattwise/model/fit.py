"""Refit the 12 energy coefficients to measured runs (spec section 6, "Fitting").

Minimises ``Σ log(Ê/E)²`` over runs with ``k ≥ 0`` (scipy's bounded ``least_squares``,
started from a non-negative linear least-squares fit of the relative errors), for one
hardware kind at a time. scipy is imported lazily (the ``wattwise[model]`` extra).

Example:
    >>> from wattwise.model.fit import fit_coefficients
    >>> X = [[1, 2.0] + [0.0] * 10, [1, 4.0] + [0.0] * 10, [1, 8.0] + [0.0] * 10]
    >>> r = fit_coefficients(X, [12.0, 14.0, 18.0], "cpu")
    >>> round(r.coefficients.k_e, 3), round(r.coefficients.k_p, 3), r.mean_abs_error < 1e-6
    (10.0, 1.0, True)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from wattwise._record import record
from wattwise.errors import ConfigurationError
from wattwise.model.coefficients import COEFFICIENT_NAMES, Coefficients

__all__ = ["FitResult", "cross_validate", "fit_coefficients", "mean_abs_error"]


@record
class FitResult:
    """Result of a fit.

    Attributes:
        coefficients: the fitted coefficients (with ``fit_error`` and ``n_runs`` set).
        mean_abs_error: mean ``|pred/meas - 1|`` on the fitted runs (in-sample).
        rms_log_error: ``sqrt(mean(log(pred/meas)²))``.
        n_runs: runs fitted.
        free: names of the coefficients that were fitted (columns that are all zero stay 0).
        ratios: ``pred/meas`` per run.
    """

    coefficients: Coefficients
    mean_abs_error: float
    rms_log_error: float
    n_runs: int
    free: tuple[str, ...]
    ratios: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "coefficients": self.coefficients.to_json(),
            "mean_abs_error": self.mean_abs_error,
            "rms_log_error": self.rms_log_error,
            "n_runs": self.n_runs,
            "free": list(self.free),
        }


def mean_abs_error(features: Sequence[Sequence[float]], measured_joules: Sequence[float],
                   coefficients: Coefficients | Sequence[float]) -> float:
    """Mean ``|X·k / E - 1|`` over runs."""
    k = coefficients.values if isinstance(coefficients, Coefficients) else tuple(coefficients)
    errs = [abs(sum(x * c for x, c in zip(row, k)) / e - 1) for row, e in zip(features, measured_joules)]
    return sum(errs) / len(errs)


def _validate(features: Sequence[Sequence[float]], measured: Sequence[float]) -> None:
    if len(features) != len(measured):
        raise ConfigurationError(
            f"fit: {len(features)} feature rows but {len(measured)} measured energies"
        )
    if len(features) == 0:
        raise ConfigurationError("fit: no runs to fit (need at least one measured run)")
    for i, row in enumerate(features):
        if len(row) != 12:
            raise ConfigurationError(f"fit: feature row {i} has {len(row)} entries, expected 12")
        if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in row):
            raise ConfigurationError(f"fit: feature row {i} is {list(row)!r:.200}; expected 12 "
                                     "finite numbers")
    for i, e in enumerate(measured):
        if not (isinstance(e, (int, float)) and e > 0 and math.isfinite(e)):
            raise ConfigurationError(
                f"fit: measured energy of run {i} is {e!r}; expected joules > 0 (unknown runs "
                "must be left out)"
            )


def fit_coefficients(
    features: Sequence[Sequence[float]],
    measured_joules: Sequence[float],
    hardware: str,
    *,
    source: str = "refit by wattwise (least squares on log ratios, k >= 0)",
) -> FitResult:
    """Fit non-negative coefficients to measured runs.

    Args:
        features: one 12-entry feature row per run (``E = X·k``), see
            :func:`wattwise.model.energy.run_features`.
        measured_joules: measured energy per run, joules (> 0).
        hardware: ``"cpu"`` or ``"gpu"``.
        source: text stored in the coefficients.

    Returns:
        :class:`FitResult`. With fewer runs than free coefficients the fit is
        underdetermined (it still returns one solution; its in-sample error says little).
    """
    import numpy as np

    _validate(features, measured_joules)
    X = np.asarray(features, dtype=float)
    E = np.asarray(measured_joules, dtype=float)
    try:
        with np.errstate(all="ignore"):  # an overflow shows as a non-finite result, below
            k = _solve(X, E)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError) as e:
        raise ConfigurationError(f"fit: the solver failed on these runs ({e}); check that the "
                                 "features and joules are plausible") from None
    if not np.all(np.isfinite(k)):
        raise ConfigurationError("fit: no finite coefficients fit these runs (their features "
                                 "or joules are too large or too small for the solver)")
    free = [j for j in range(12) if np.any(X[:, j] != 0)]
    pred = X @ k
    ratios = pred / E
    mae = float(np.mean(np.abs(ratios - 1)))
    rms = float(np.sqrt(np.mean(np.log(np.maximum(ratios, 1e-300)) ** 2)))
    coefs = Coefficients(tuple(float(v) for v in k), hardware, source, mae, len(E))
    return FitResult(coefs, mae, rms, len(E), tuple(COEFFICIENT_NAMES[j] for j in free),
                     tuple(float(r) for r in ratios))


def _solve(X: Any, E: Any) -> Any:
    """The 12 coefficients ``k >= 0`` minimising ``sum(log(X·k / E)²)`` (numpy arrays)."""
    import numpy as np
    from scipy.optimize import least_squares, nnls

    free = [j for j in range(12) if np.any(X[:, j] != 0)]
    Xf = X[:, free]
    # column scaling so every free coefficient is O(1)
    scale = np.array([E.mean() / max(np.abs(Xf[:, j]).mean(), 1e-300) for j in range(len(free))])
    A = Xf * scale
    # start: non-negative least squares on the relative errors
    x0, _ = nnls(A / E[:, None], np.ones_like(E))
    if not np.all(A @ x0 > 0):
        x0 = x0 + 1e-3
    x0 = np.maximum(x0, 1e-9)

    def resid(x: Any) -> Any:
        return np.log(np.maximum(A @ x, 1e-300) / E)

    def jac(x: Any) -> Any:
        return A / np.maximum(A @ x, 1e-300)[:, None]

    res = least_squares(resid, x0, jac=jac, bounds=(0.0, np.inf), method="trf",
                        xtol=1e-12, ftol=1e-12, gtol=1e-12, max_nfev=2000)
    k = np.zeros(12)
    k[free] = res.x * scale
    return k


def cross_validate(
    features: Sequence[Sequence[float]],
    measured_joules: Sequence[float],
    hardware: str,
    folds: int = 5,
) -> float:
    """K-fold cross-validated mean ``|pred/meas - 1|`` of :func:`fit_coefficients`.

    Run i goes to fold ``i % folds`` (deterministic; shuffle the rows first if their order
    is meaningful). Returns the mean held-out error over all runs.
    """
    _validate(features, measured_joules)
    if not isinstance(folds, int) or folds < 2 or folds > len(features):
        raise ConfigurationError(
            f"cross_validate(folds={folds!r}) must be an int in [2, number of runs={len(features)}]"
        )
    errs: list[float] = []
    for f in range(folds):
        train = [i for i in range(len(features)) if i % folds != f]
        test = [i for i in range(len(features)) if i % folds == f]
        r = fit_coefficients([features[i] for i in train], [measured_joules[i] for i in train],
                             hardware)
        k = r.coefficients.values
        for i in test:
            errs.append(abs(sum(x * c for x, c in zip(features[i], k)) / measured_joules[i] - 1))
    return sum(errs) / len(errs)
