"""Framework-neutral energy accounting: windows, phases, epochs, joules per datum, run summary.

CONTRACT STUB written by the integrator. The tracker helper replaces the bodies; the
public names, signatures and record fields below are what the Lightning and Keras
adapters and the CLI program against. Changing them needs the integrator's agreement.

Call sequence an adapter makes::

    tracker = EnergyTracker(meters="auto", summary_path="runs/x.json")   # validates only
    tracker.start(hardware=..., metadata=...)           # opens meters, idle baseline, writes summary
    for epoch in ...:
        tracker.start_window("train", epoch)            # reads meters once
        for batch in ...:
            tracker.add_batch(samples=len(batch))      # no meter read, just counts
            step = tracker.step_reading()              # only when step-level logging is on
        rec = tracker.end_window()                      # reads meters once -> PhaseRecord
        tracker.start_window("validate", epoch); ...; tracker.end_window()
        epoch_rec = tracker.end_epoch()                 # -> EpochRecord, summary rewritten atomically
    tracker.finish("completed")                         # closes meters, final summary
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from typing import Any, Literal, Mapping, Sequence

from wattwise.meters.base import Meter

__all__ = [
    "EnergyTracker",
    "PhaseRecord",
    "EpochRecord",
    "StepRecord",
    "Phase",
    "RunStatus",
    "PHASES",
]

Phase = Literal["train", "validate", "test", "predict"]
PHASES: tuple[str, ...] = ("train", "validate", "test", "predict")
RunStatus = Literal["running", "completed", "interrupted", "failed"]


@dataclass(frozen=True)
class PhaseRecord:
    """Energy of one phase window (or of several windows of the same phase in one epoch, summed).

    Unknown values are ``None``, never 0. ``joules`` is None when the window was shorter than a
    meter's update period and its counters did not move.
    """

    phase: str
    epoch: int
    joules: float | None
    joules_by_domain: Mapping[str, float | None]
    seconds: float
    samples: int
    batches: int
    estimated: bool
    joules_per_sample: float | None
    joules_per_batch: float | None
    watts: float | None
    active_joules: float | None = None  # joules minus idle baseline power x seconds, if measured
    co2_g: float | None = None  # grams CO2eq, if a carbon intensity is known

    def metrics(self) -> dict[str, float]:
        """Flat quantity -> value dict for loggers, with None values left out.

        Keys: ``joules``, ``joules_per_sample``, ``joules_per_batch``, ``watts``, ``seconds``,
        ``samples``, ``active_joules``, ``co2_g`` and ``joules/<domain>`` per domain (e.g.
        ``joules/gpu:0``). Adapters add their prefix (``energy/train_`` or ``energy_``).
        """
        raise NotImplementedError


@dataclass(frozen=True)
class StepRecord:
    """A step-level window: at least ``min_window_s`` long, spanning one or more batches."""

    phase: str
    epoch: int
    step: int  # global batch index of the last batch in the window
    joules: float | None
    seconds: float
    samples: int
    batches: int
    estimated: bool
    joules_per_sample: float | None
    watts: float | None


@dataclass(frozen=True)
class EpochRecord:
    """All phase records of one epoch."""

    epoch: int
    phases: Mapping[str, PhaseRecord]
    joules: float | None
    seconds: float


class EnergyTracker:
    """Turns meter readings into joules per phase, epoch and sample. Framework-neutral.

    Args:
        meters: ``"auto"``, a list of meter names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
            ``"codecarbon"``) or :class:`~wattwise.meters.Meter` instances (mixing allowed).
        min_window_s: shortest step-level window, in seconds (default 1.0).
        summary_path: where the run summary JSON goes; None writes none.
        idle_baseline_s: seconds of idle power to measure in :meth:`start` (0 = off).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for CO2 figures; or
        country_iso_code: ISO 3166 alpha-3 code looked up in codecarbon's offline data.
        node_meters: False on every process but one per node, so node-wide counters
            (RAPL, codecarbon) are not counted once per rank.
        gpu_devices: CUDA logical device indices this process uses (for NVML), None = all visible.
        run_name: a name for the run summary.
    """

    def __init__(
        self,
        meters: str | Sequence[str | Meter] = "auto",
        *,
        min_window_s: float = 1.0,
        summary_path: str | PathLike[str] | None = None,
        idle_baseline_s: float = 0.0,
        carbon_intensity_g_per_kwh: float | None = None,
        country_iso_code: str | None = None,
        node_meters: bool = True,
        gpu_devices: Sequence[int] | None = None,
        run_name: str | None = None,
    ) -> None:
        raise NotImplementedError

    # lifecycle -----------------------------------------------------------------------------
    def start(
        self,
        *,
        hardware: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Open meters, measure the idle baseline, take the first reading, write the summary."""
        raise NotImplementedError

    def start_window(self, phase: str, epoch: int) -> None:
        """Begin a window of ``phase`` in ``epoch`` (one meter read)."""
        raise NotImplementedError

    def add_batch(self, samples: int) -> None:
        """Count one batch of ``samples`` samples in the open window. No meter read."""
        raise NotImplementedError

    def step_reading(self) -> StepRecord | None:
        """Step-level window: returns a record once ``min_window_s`` has passed since the last
        one (reads meters only when the clock says so), else None."""
        raise NotImplementedError

    def end_window(self) -> PhaseRecord:
        """Close the open window (one meter read) and return its record."""
        raise NotImplementedError

    def end_epoch(self) -> EpochRecord:
        """Close the epoch, add it to the summary and rewrite the summary file atomically."""
        raise NotImplementedError

    def finish(self, status: RunStatus = "completed", error: BaseException | None = None) -> dict[str, Any]:
        """Close any open window and the meters, write the final summary; returns it as a dict.

        Idempotent: a second call returns the same summary without reading again.
        """
        raise NotImplementedError

    # queries -------------------------------------------------------------------------------
    @property
    def estimated(self) -> bool:
        """True when the joules come from estimates (no hardware counter is in use)."""
        raise NotImplementedError

    @property
    def meters(self) -> tuple[Meter, ...]:
        """The meters in use (after :meth:`start`; failed ones dropped)."""
        raise NotImplementedError

    def totals(self) -> dict[str, PhaseRecord]:
        """Run totals per phase (epoch = -1), including restored checkpoint totals."""
        raise NotImplementedError

    def summary(self) -> dict[str, Any]:
        """The run summary as a JSON-serialisable dict (schema in docs/summary-schema.md)."""
        raise NotImplementedError

    def set_advice(self, advice: Mapping[str, Any]) -> None:
        """Store the sizing advice (JSON form) in the run summary."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Cumulative totals for checkpoints."""
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore cumulative totals from :meth:`state_dict` (resuming from a checkpoint)."""
        raise NotImplementedError
