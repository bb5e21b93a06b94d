"""A whole-run energy forecast, framework-free.

Three numbers, each labelled with what it rests on:

* **model** - at the start of a fit (as soon as the sizing check has run): the BUTTER-E
  model's predicted training joules per sample x samples per epoch x planned epochs, with a band
  of +/- the coefficients' cross-validated error. Training phase only (the model predicts
  training energy), and as good as the coefficients (calibrated or a preset).
* **projections** - from the first complete epoch on: the joules measured so far in the fit
  stage (every phase) + the mean joules of the complete epochs x the epochs still planned.
  Logged as ``energy/projected_run_joules`` (Keras: ``energy_projected_run_joules``).
* **final** - when the fit stage ends: what was measured, and each forecast's error against it,
  when the run did the planned number of epochs (an early-stopped run is not comparable: said so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wattwise._record import record
from wattwise.records import EpochRecord, PhaseRecord

__all__ = ["PROJECTED_KEY", "PROJECTED_KEY_KERAS", "Forecast"]

PROJECTED_KEY = "energy/projected_run_joules"
"""The measured projection's metric key (Lightning, Fabric)."""
PROJECTED_KEY_KERAS = "energy_projected_run_joules"
"""The measured projection's metric key (Keras, transformers)."""


def _positive_int(value: Any) -> int | None:
    try:
        v = int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return v if v > 0 else None


def _ratio_error(predicted: float | None, measured: float | None) -> float | None:
    if predicted is None or measured is None or measured <= 0:
        return None
    return predicted / measured - 1.0


class Forecast:
    """The forecast of one fit: planned epochs and samples, then :meth:`set_model`,
    :meth:`project` after each complete epoch and :meth:`finish` at the end of the stage."""

    def __init__(self, planned_epochs: Any, samples_per_epoch: Any) -> None:
        self.planned_epochs = _positive_int(planned_epochs)
        self.samples_per_epoch = _positive_int(samples_per_epoch)
        self.model: dict[str, Any] | None = None
        self.projections: list[dict[str, Any]] = []
        self.final: dict[str, Any] | None = None
        self._so_far: float | None = None  # fit joules so far, every phase
        self._sum, self._count = 0.0, 0  # complete epochs' joules

    # the model's forecast -----------------------------------------------------------------
    def set_model(self, advice: Mapping[str, Any] | None) -> dict[str, Any] | None:
        """The model forecast from the sizing advice (its predicted J/sample and the
        coefficients' CV error); None when the plan or the prediction is unknown."""
        if not advice or self.planned_epochs is None or self.samples_per_epoch is None:
            return None
        jps = advice.get("predicted_joules_per_sample", advice.get("estimated_joules_per_sample"))
        if not isinstance(jps, (int, float)) or not jps > 0:
            return None
        coefs = advice.get("coefficients")
        coefs = coefs if isinstance(coefs, Mapping) else {}
        cv = coefs.get("cv_error", advice.get("cv_error"))
        cv = float(cv) if isinstance(cv, (int, float)) and cv >= 0 else None
        joules = float(jps) * self.samples_per_epoch * self.planned_epochs
        self.model = {
            "train_joules": joules,
            "train_joules_low": None if cv is None else joules * max(0.0, 1.0 - cv),
            "train_joules_high": None if cv is None else joules * (1.0 + cv),
            "cv_error": cv,
            "joules_per_sample": float(jps),
            "samples_per_epoch": self.samples_per_epoch,
            "epochs": self.planned_epochs,
            "coefficients": coefs.get("label") or coefs.get("source") or None,
            "basis": "BUTTER-E model: predicted training J/sample x samples per epoch x epochs "
                     "(training phase only)",
        }
        return self.model

    def text(self) -> str | None:
        """One line for the console, or None without a model forecast."""
        m = self.model
        if m is None:
            return None
        band = "" if m["cv_error"] is None else f" +/- {100 * m['cv_error']:.0f} %"
        label = f"; {m['coefficients']}" if m["coefficients"] else ""
        return (f"wattwise: forecast for this fit ({m['epochs']:,} epochs x "
                f"{m['samples_per_epoch']:,} samples): {_fmt_j(m['train_joules'])}{band} of "
                f"training energy (BUTTER-E model{label})")

    # the measured projection ---------------------------------------------------------------
    def project(self, epoch: EpochRecord, done_epochs: int,
                so_far: float | None | Callable[[], float | None]) -> float | None:
        """After the complete epoch ``epoch`` (``done_epochs`` complete fit epochs, restored
        ones included): the projected joules of the whole fit, or None when unknown.
        ``so_far`` is the joules measured in the fit stage so far (every phase), or a function
        giving it; it is asked once, later epochs are added to it (constant cost per epoch)."""
        if not epoch.complete or epoch.joules is None:
            return None
        if self._so_far is None:
            self._so_far = so_far() if callable(so_far) else so_far
        else:
            self._so_far += epoch.joules
        if self._so_far is None:
            return None
        self._count += 1
        self._sum += epoch.joules
        if self.planned_epochs is None:
            return None
        projected = self._so_far + self._sum / self._count * max(0, self.planned_epochs - done_epochs)
        self.projections.append({"after_epoch": epoch.epoch, "run_joules": projected})
        return projected

    @property
    def projected_run_joules(self) -> float | None:
        """The latest projection, or None."""
        return self.projections[-1]["run_joules"] if self.projections else None

    # the end ---------------------------------------------------------------------------------
    def finish(self, totals: Mapping[str, PhaseRecord], epochs_completed: int) -> dict[str, Any]:
        """Compare with what the fit stage measured (``totals`` per phase)."""
        known = [r.joules for p, r in totals.items() if p != "other"]
        run_j = None if not known or any(j is None for j in known) else float(sum(known))  # type: ignore[arg-type]
        train = totals.get("train")
        train_j = None if train is None else train.joules
        comparable = self.planned_epochs is not None and epochs_completed == self.planned_epochs
        first = self.projections[0]["run_joules"] if self.projections else None
        self.final = {
            "epochs_completed": epochs_completed,
            "measured_train_joules": train_j,
            "measured_run_joules": run_j,
            "model_error": _ratio_error(self.model["train_joules"], train_j)
            if comparable and self.model else None,
            "first_projection_error": _ratio_error(first, run_j) if comparable else None,
            "note": None if comparable else (
                "the fit did not run the planned epochs: forecasts not compared"
                if self.planned_epochs is not None else "no planned number of epochs"),
        }
        return self.final

    def snapshot(self) -> ForecastSnapshot:
        """An immutable view for the summary writer, in constant time (projections are only
        appended, the model and final objects replaced, never changed)."""
        return ForecastSnapshot(self.planned_epochs, self.samples_per_epoch, self.model,
                                self.projections, len(self.projections), self.final)

    def to_json(self) -> dict[str, Any]:
        """The ``forecast`` object of the run summary."""
        return self.snapshot().to_json()


@record
class ForecastSnapshot:
    """What :meth:`Forecast.snapshot` saw; rendered on the summary writer's thread."""

    planned_epochs: int | None
    samples_per_epoch: int | None
    model: Mapping[str, Any] | None
    projections: Sequence[Mapping[str, Any]]
    n_projections: int
    final: Mapping[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "planned_epochs": self.planned_epochs,
            "samples_per_epoch": self.samples_per_epoch,
            "model": None if self.model is None else dict(self.model),
            "projections": [dict(p) for p in self.projections[: self.n_projections]],
            "final": None if self.final is None else dict(self.final),
        }


def _fmt_j(j: float) -> str:
    for unit, scale in (("MJ", 1e6), ("kJ", 1e3), ("J", 1.0), ("mJ", 1e-3)):
        if abs(j) >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j:.3g} J"
