"""The 12 energy coefficients, the presets (the paper's and a refit) and a JSON file format.

Order: ``[k_e, k_p, k_o, k_d, a1, a2, a3, a4, m1, m2, m3, m4]``; units: ``k_e`` J per run,
``k_p`` J per pass, ``k_o`` J/GFLOP, ``k_d`` J per layer per pass, ``a_c`` J per access to
level c, ``m_c`` J per MiB accessed at level c.

**Coefficient-scale correction.** The paper's Table 4 prints every coefficient except ``k_e``
3000x too large (all BUTTER-E runs had 3000 epochs and the fit left the epoch count out);
the ``paper-*`` presets are Table 4 divided by 3000, except ``k_e``.

**Presets.** ``paper-cpu`` / ``paper-gpu``: the paper's (scale-corrected). ``refit-cpu`` /
``refit-gpu``: refitted by :func:`wattwise.model.fit.fit_coefficients` on the BUTTER-E run sample
(``shared/data/butter_e/runs_sample.csv``, 102 runs per kind), reproduced by
``benchmarks/model_accuracy.py``. ``preset("cpu")`` / ``preset("gpu")`` is the DEFAULT for that
kind: the preset with the lower error on that sample (:data:`DEFAULT_PRESETS`). Each preset's
``cv_error`` is its error on the sample: 5-fold cross-validated for the refit, plain for the
paper's (not fitted on it, so every run is held out).

Example:
    >>> from wattwise.model.coefficients import preset
    >>> c = preset("paper-gpu")
    >>> round(c.k_o, 4)  # J/GFLOP
    0.2967
    >>> preset("gpu").source == preset("refit-gpu").source  # the refit beats the paper's
    True
    >>> Coefficients.from_json(c.to_json()) == c
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from wattwise._record import record
from wattwise.errors import ConfigurationError

__all__ = [
    "COEFFICIENT_NAMES",
    "DEFAULT_PRESETS",
    "FORMAT",
    "PRESET_NAMES",
    "REFIT",
    "TABLE4_PRINTED",
    "Coefficients",
    "preset",
]

COEFFICIENT_NAMES: tuple[str, ...] = (
    "k_e", "k_p", "k_o", "k_d", "a1", "a2", "a3", "a4", "m1", "m2", "m3", "m4",
)
FORMAT = "wattwise-coefficients/1"

# Table 4 of Tripp et al. (2024) exactly as printed ("—" entries as 0).
TABLE4_PRINTED: dict[str, tuple[float, ...]] = {
    "cpu": (10200, 1460, 744, 0, 0, 59.3, 215, 305, 0, 23.0, 22.5, 36.3),
    "gpu": (272000, 3080, 890, 33.0, 16.4, 19.8, 0, 0, 0, 0, 0, 5.7),
}


@record
class Coefficients:
    """Twelve non-negative coefficients of the linear energy model, in joules.

    Attributes:
        values: the 12 values in :data:`COEFFICIENT_NAMES` order.
        hardware: ``"cpu"`` or ``"gpu"`` (which hierarchy kind they were fitted on).
        source: where they come from (e.g. ``"Tripp et al. 2024 Table 4 / 3000 except k_e"``).
        fit_error: mean ``|pred/meas - 1|`` of the fit, when known.
        n_runs: number of runs fitted, when known.
        cv_error: cross-validated mean ``|pred/meas - 1|`` (a fraction), when known; the
            "typical error" the sizing advice quotes as its error band.
    """

    values: tuple[float, ...]
    hardware: str
    source: str = ""
    fit_error: float | None = None
    n_runs: int | None = None
    cv_error: float | None = None

    def __post_init__(self) -> None:
        vals = tuple(float(v) for v in self.values)
        if len(vals) != 12:
            raise ConfigurationError(
                f"Coefficients(values=...) needs 12 values {COEFFICIENT_NAMES}, got {len(vals)}"
            )
        if any(v < 0 or not math.isfinite(v) for v in vals):
            raise ConfigurationError(
                f"Coefficients(values={vals!r}) must all be finite and >= 0"
            )
        if self.hardware not in ("cpu", "gpu"):
            raise ConfigurationError(f"Coefficients(hardware={self.hardware!r}) must be 'cpu' or 'gpu'")
        object.__setattr__(self, "values", vals)

    def __getattr__(self, name: str) -> float:
        if name in COEFFICIENT_NAMES:
            return self.values[COEFFICIENT_NAMES.index(name)]
        raise AttributeError(name)

    def as_dict(self) -> dict[str, float]:
        """Name -> value."""
        return dict(zip(COEFFICIENT_NAMES, self.values))

    def to_json(self) -> dict[str, Any]:
        """JSON form (the coefficients file format, ``"format": "wattwise-coefficients/1"``)."""
        return {
            "format": FORMAT,
            "hardware": self.hardware,
            "units": "joules; k_o per GFLOP, m per MiB, k_p per pass, k_d per layer per pass",
            "coefficients": self.as_dict(),
            "source": self.source,
            "fit_error": self.fit_error,
            "n_runs": self.n_runs,
            "cv_error": self.cv_error,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Coefficients:
        """Inverse of :meth:`to_json`; raises ConfigurationError naming what is wrong."""
        if not isinstance(d, Mapping):
            raise ConfigurationError(f"Coefficients.from_json: expected a JSON object, got {d!r:.80}")
        if d.get("format") != FORMAT:
            raise ConfigurationError(
                f"Coefficients.from_json: format={d.get('format')!r}, expected {FORMAT!r} "
                "(write the file with `wattwise fit` or Coefficients.to_json())"
            )
        coefs = d.get("coefficients")
        if not isinstance(coefs, Mapping):
            raise ConfigurationError("Coefficients.from_json: 'coefficients' must be an object")
        missing = [n for n in COEFFICIENT_NAMES if n not in coefs]
        if missing:
            raise ConfigurationError(f"Coefficients.from_json: missing coefficients {missing!r}")
        try:
            values = tuple(float(coefs[n]) for n in COEFFICIENT_NAMES)
        except (TypeError, ValueError) as e:
            raise ConfigurationError(f"Coefficients.from_json: non-numeric coefficient: {e}") from e
        fe = d.get("fit_error")
        nr = d.get("n_runs")
        cv = d.get("cv_error")
        return cls(values, str(d.get("hardware")), str(d.get("source", "")),
                   None if fe is None else float(fe), None if nr is None else int(nr),
                   None if cv is None else float(cv))

    def with_values(self, values: Sequence[float], **kw: Any) -> Coefficients:
        """A copy with new values (and optionally new source/fit_error/n_runs/cv_error)."""
        return Coefficients(tuple(values), kw.get("hardware", self.hardware),
                            kw.get("source", self.source), kw.get("fit_error"), kw.get("n_runs"),
                            kw.get("cv_error"))


# Refitted on the BUTTER-E run sample (shared/data/butter_e/runs_sample.csv, measured =
# std_energy, 102 runs per kind, batch 256) by wattwise.model.fit.fit_coefficients, rounded to 6
# significant digits (values below 1e-9 J set to 0). Produced by
#   WATTWISE_SHARED=../shared python benchmarks/model_accuracy.py --print-refit
# (tests/model/test_refit.py refits and checks these). cv_error: 5-fold cross_validate on the
# same runs; fit_error: in-sample mean |pred/meas - 1|.
REFIT: dict[str, dict[str, Any]] = {
    "cpu": {
        "values": (15208.3, 0.212061, 0.256184, 0.0254029, 0.0, 0.0910681, 0.307862, 0.707371,
                   0.111278, 0.0, 0.0, 0.0035693),
        "fit_error": 0.2593, "cv_error": 0.2990, "n_runs": 102,
    },
    "gpu": {
        "values": (274395.0, 0.980532, 0.323129, 0.0, 0.0222963, 0.0136475, 0.0, 0.0,
                   0.000348862, 0.0, 0.0, 0.000787606),
        "fit_error": 0.0231, "cv_error": 0.0250, "n_runs": 102,
    },
}
# The paper's coefficients' mean |pred/meas - 1| on the same 102 runs per kind (they were not
# fitted on them: every run is held out); benchmarks/model_accuracy.py prints it.
PAPER_SAMPLE_ERROR: dict[str, float] = {"cpu": 0.3532, "gpu": 0.0289}

PRESET_NAMES: tuple[str, ...] = ("cpu", "gpu", "paper-cpu", "paper-gpu", "refit-cpu", "refit-gpu")
"""Names :func:`preset` takes: ``"cpu"``/``"gpu"`` (the default for that kind) and the named ones."""

DEFAULT_PRESETS: dict[str, str] = {
    kind: ("refit-" if REFIT[kind]["cv_error"] < PAPER_SAMPLE_ERROR[kind] else "paper-") + kind
    for kind in ("cpu", "gpu")
}
"""Kind -> the named preset ``preset(kind)`` returns: the refit where its cross-validated error
beats the paper's error on the same runs (both kinds, today)."""


def preset(name: str) -> Coefficients:
    """Coefficients by name (:data:`PRESET_NAMES`).

    Args:
        name: ``"cpu"`` / ``"gpu"``: the default for that hardware kind (:data:`DEFAULT_PRESETS`);
            ``"paper-cpu"`` / ``"paper-gpu"``: Table 4 of Tripp et al. 2024 / 3000 except ``k_e``;
            ``"refit-cpu"`` / ``"refit-gpu"``: refitted on the BUTTER-E run sample.

    Returns:
        :class:`Coefficients` with ``source`` saying what they are and ``cv_error`` set.
    """
    if name not in PRESET_NAMES:
        raise ConfigurationError(
            f"preset({name!r}): expected one of {', '.join(map(repr, PRESET_NAMES))}")
    name = DEFAULT_PRESETS.get(name, name)
    origin, kind = name.split("-")
    if origin == "paper":
        t = TABLE4_PRINTED[kind]
        return Coefficients(
            (t[0],) + tuple(v / 3000.0 for v in t[1:]), kind,
            source=(f"paper-{kind}: Tripp et al. 2024 Table 4, divided by 3000 except k_e "
                    f"(scale correction); cv_error = its mean |pred/meas - 1| on the BUTTER-E "
                    "run sample (not fitted on it)"),
            cv_error=PAPER_SAMPLE_ERROR[kind],
        )
    r = REFIT[kind]
    return Coefficients(
        r["values"], kind,
        source=(f"refit-{kind}: refitted by wattwise on the BUTTER-E run sample "
                f"({r['n_runs']} {kind.upper()} runs, batch 256; "
                "benchmarks/model_accuracy.py); cv_error 5-fold cross-validated"),
        fit_error=r["fit_error"], n_runs=r["n_runs"], cv_error=r["cv_error"],
    )
