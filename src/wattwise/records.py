"""Results as frozen records, their metric keys, and their reduction across processes.

Framework-free arithmetic both callbacks share: one :func:`metric_keys` builds the logged keys of
either framework (the same on every machine, with :data:`ESTIMATED_KEY` saying whether the joules
are estimates), :func:`grouped` applies a logger's group separator; :func:`reduce_records` sums a
phase record over ranks (the adapter only does the ``all_gather``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from wattwise._record import record

__all__ = [
    "ESTIMATED_KEY",
    "MEASUREMENT_TEXT_TAG",
    "METRIC_QUANTITIES",
    "EpochRecord",
    "PhaseRecord",
    "StepRecord",
    "domain_key",
    "grouped",
    "metric_keys",
    "progress_bar_metrics",
    "reduce_records",
]

#: Quantities logged per phase (plus ``joules/<domain>`` per measured domain). Other fields
#: (seconds, samples, joules_per_batch) stay in the run summary: each logged key costs time.
METRIC_QUANTITIES: tuple[str, ...] = ("joules", "joules_per_sample", "watts", "active_joules", "co2_g")
_STEP_QUANTITIES = ("joules", "joules_per_sample", "watts")
_LIGHTNING_PHASE = {"train": "train", "validate": "val", "test": "test", "predict": "predict"}
_KERAS_PHASE = {"train": "", "validate": "val_", "test": "test_", "predict": "predict_"}


def _per(joules: float | None, denominator: float | None) -> float | None:
    return joules / denominator if joules is not None and denominator else None


@record
class PhaseRecord:
    """Energy of one phase window (or of several windows of the same phase in one epoch, summed).

    Unknown values are ``None``, never 0. ``joules`` is None when the window was shorter than a
    meter's update period and its counters did not move; it sums the known domains, and
    ``joules_by_domain`` shows which are not. ``samples`` is None when a batch's samples could
    not be counted (then J/sample is unknown too). Totals use ``epoch = -1`` and phase
    ``"other"`` for time outside any window, ``"run"`` for the whole run.
    """

    phase: str
    epoch: int
    joules: float | None
    joules_by_domain: Mapping[str, float | None]
    seconds: float
    samples: int | None
    batches: int
    estimated: bool
    joules_per_sample: float | None
    joules_per_batch: float | None
    watts: float | None
    active_joules: float | None = None  # joules minus idle baseline power x seconds, if measured
    co2_g: float | None = None  # grams CO2eq, if a carbon intensity is known

    @classmethod
    def from_sums(
        cls,
        phase: str,
        epoch: int,
        *,
        joules: float | None,
        joules_by_domain: Mapping[str, float | None],
        seconds: float,
        samples: int | None,
        batches: int,
        estimated: bool,
        active_joules: float | None = None,
        co2_g: float | None = None,
    ) -> PhaseRecord:
        """A record from summed quantities, with the ratios derived (None where undefined):
        J/sample = joules / samples, J/batch = joules / batches, W = joules / seconds."""
        return cls(
            phase=phase,
            epoch=epoch,
            joules=joules,
            joules_by_domain=joules_by_domain,
            seconds=seconds,
            samples=samples,
            batches=batches,
            estimated=estimated,
            joules_per_sample=_per(joules, samples),
            joules_per_batch=_per(joules, batches),
            watts=_per(joules, seconds),
            active_joules=active_joules,
            co2_g=co2_g,
        )

    def metrics(self) -> dict[str, float]:
        """Flat quantity -> value dict, None values left out: ``joules``, ``joules_per_sample``,
        ``joules_per_batch``, ``watts``, ``seconds``, ``samples``, ``active_joules``, ``co2_g``
        and ``joules/<domain>`` per known domain (e.g. ``joules/gpu:0``; the domain as is, not
        a metric key - see :func:`metric_keys` for those)."""
        out: dict[str, float] = {}
        for key in ("joules", "joules_per_sample", "joules_per_batch", "watts", "seconds",
                    "samples", "active_joules", "co2_g"):
            value = getattr(self, key)
            if value is not None:
                out[key] = float(value)
        for domain, joules in self.joules_by_domain.items():
            if joules is not None:
                out[f"joules/{domain}"] = float(joules)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (as in the run summary)."""
        d = dict(self.__dict__)
        d["joules_by_domain"] = dict(self.joules_by_domain)
        return d


@record
class StepRecord:
    """A step-level window: at least ``min_window_s`` long, spanning one or more batches."""

    phase: str
    epoch: int
    step: int  # global batch index (per phase, 0-based) of the last batch in the window
    joules: float | None
    seconds: float
    samples: int | None
    batches: int
    estimated: bool
    joules_per_sample: float | None
    watts: float | None


@record
class EpochRecord:
    """All phase records of one epoch of one stage; ``joules`` None when no phase's is known.

    ``complete`` is False for an epoch the run stopped in (a crash, an interrupt).
    """

    epoch: int
    phases: Mapping[str, PhaseRecord]
    joules: float | None
    seconds: float
    stage: str = "fit"
    stage_index: int = 0
    complete: bool = True

    def to_dict(self) -> dict[str, Any]:
        """JSON form (as in the run summary)."""
        return {
            "epoch": self.epoch,
            "stage": self.stage,
            "stage_index": self.stage_index,
            "complete": self.complete,
            "joules": self.joules,
            "seconds": self.seconds,
            "phases": {p: r.to_dict() for p, r in self.phases.items()},
        }


#: The key that says whether the joules of the logged values are estimates: 1.0 (estimated, no
#: hardware counter readable) or 0.0 (measured). One key per style, whatever the phase.
ESTIMATED_KEY: dict[str, str] = {"lightning": "energy/estimated", "keras": "energy_estimated"}

#: The tag of the one TensorBoard text entry that says how the joules were obtained.
MEASUREMENT_TEXT_TAG = "wattwise/measurement"

_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_SAFE = _ALNUM | frozenset("_-.")


def domain_key(domain: str, style: Literal["lightning", "keras"] = "lightning") -> str:
    """A domain name as a metric-key segment that every logger accepts.

    Lightning style keeps letters, digits, ``_``, ``-`` and ``.`` (what MLflow, W&B, CSV and
    TensorBoard all accept; ``/`` is the group separator, so it is replaced too); Keras style
    keeps letters and digits (a Python-identifier-like log name). Everything else (non-ASCII
    letters too) becomes ``_``.

    Example:
        >>> domain_key("cpu:package-0"), domain_key("cpu:package-0", "keras")
        ('cpu_package-0', 'cpu_package_0')
    """
    if style == "lightning":
        return "".join(c if c in _SAFE else "_" for c in domain)
    return "".join(c if c in _ALNUM else "_" for c in domain)


def metric_keys(
    rec: PhaseRecord | StepRecord, style: Literal["lightning", "keras"]
) -> dict[str, float]:
    """The logged keys and values of one record; unknown (None, NaN) values are left out.

    The keys never depend on the hardware: measured and estimated joules have the same keys,
    and :data:`ESTIMATED_KEY` (``energy/estimated`` / ``energy_estimated``: 1.0 estimated, 0.0
    measured) comes with every non-empty result to say which.

    Lightning: ``energy/<phase>_<quantity>`` with phase ``train``/``val``/``test``/``predict``,
    ``energy/<phase>_joules/<domain>`` per domain (:func:`domain_key`: ``cpu_package-0``), step
    records as ``energy/train_step_<q>``. Keras: ``<prefix>energy_<quantity>`` with prefix
    ``""``/``val_``/``test_``/``predict_``, ``<prefix>energy_joules_<domain>`` (non-alphanumerics
    as ``_``), step records as ``energy_step_<q>``. Every key is made of letters, digits,
    ``_``, ``/``, ``-`` and ``.`` only.

    Example:
        >>> rec = PhaseRecord.from_sums("validate", 0, joules=6.0, seconds=2.0, samples=3,
        ...     batches=1, joules_by_domain={"cpu:package-0": 6.0}, estimated=True)
        >>> metric_keys(rec, "lightning")  # doctest: +NORMALIZE_WHITESPACE
        {'energy/val_joules': 6.0, 'energy/val_joules_per_sample': 2.0, 'energy/val_watts': 3.0,
         'energy/val_joules/cpu_package-0': 6.0, 'energy/estimated': 1.0}
    """
    step = isinstance(rec, StepRecord)
    if style == "lightning":
        phase = _LIGHTNING_PHASE.get(rec.phase, rec.phase) + ("_step" if step else "")
        stem, sep = f"energy/{phase}_", "/"
    else:
        stem = _KERAS_PHASE.get(rec.phase, rec.phase + "_") + ("energy_step_" if step else "energy_")
        sep = "_"
    out: dict[str, float] = {}
    for q in _STEP_QUANTITIES if step else METRIC_QUANTITIES:
        v = getattr(rec, q)
        if v is not None and math.isfinite(v):
            out[stem + q] = float(v)
    if isinstance(rec, PhaseRecord):
        for d, v in rec.joules_by_domain.items():
            if v is not None and math.isfinite(v):
                out[f"{stem}joules{sep}{domain_key(d, style)}"] = float(v)
    if out:
        out[ESTIMATED_KEY[style]] = 1.0 if rec.estimated else 0.0
    return out


def grouped(metrics: Mapping[str, float], separator: str) -> dict[str, float]:
    """``metrics`` with the group separator ``/`` of Lightning-style keys replaced by a logger's
    ``group_separator`` (as Lightning's ``DeviceStatsMonitor`` honours it); the same dict
    contents when the separator is ``/``.

    Example:
        >>> grouped({"energy/train_joules": 1.0}, ".")
        {'energy.train_joules': 1.0}
    """
    if separator == "/":
        return dict(metrics)
    return {k.replace("/", separator): v for k, v in metrics.items()}


def progress_bar_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """The keys worth a progress bar's room: the joules per sample of each phase."""
    return {k: v for k, v in metrics.items() if k.endswith("joules_per_sample")}


# --------------------------------------------------------------------------------------------
# across processes


def _sum(values: Sequence[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]


def reduce_records(gathered: Sequence[tuple[PhaseRecord | None, bool]]) -> PhaseRecord:
    """One record from every rank's ``(record, has_meters)`` (an ``all_gather`` of them).

    Joules, samples and batches add up (same-named domains of several nodes too); seconds
    are the longest rank's. A rank without meters (a CPU-DDP rank that reads no node counter)
    adds no joules; a rank with meters whose record or value is unknown makes the sum unknown.
    """
    recs = [r for r, _ in gathered if r is not None]
    if len(recs) == 1 and len(gathered) == 1:
        return recs[0]
    measured = [(r, m) for r, m in gathered if m]
    domains: dict[str, list[float | None]] = {}
    for r, _ in measured:
        for d, j in (r.joules_by_domain.items() if r is not None else ()):
            domains.setdefault(d, []).append(j)
    if any(r is None for r, _ in measured):  # a measuring rank failed: no domain sum is whole
        domains = {d: [None] for d in domains}

    def total(key: str) -> float | None:
        return _sum([None if r is None else getattr(r, key) for r, _ in measured]) if measured else None

    first = recs[0]
    return PhaseRecord.from_sums(
        first.phase,
        first.epoch,
        joules=total("joules"),
        joules_by_domain={d: _sum(v) if len(v) else None for d, v in domains.items()},
        seconds=max(r.seconds for r in recs),
        samples=None if any(r is None or r.samples is None for r, _ in gathered)
        else sum(r.samples for r in recs),  # type: ignore[misc]
        batches=sum(r.batches for r in recs),
        estimated=any(r.estimated for r in recs),
        active_joules=total("active_joules"),
        co2_g=total("co2_g"),
    )
