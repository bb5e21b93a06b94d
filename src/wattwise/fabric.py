"""Lightning Fabric adapter: :class:`EnergyLogger`, energy per epoch through ``fabric.log_dict``.

A Fabric loop is a plain Python loop, so the adapter is the tracker's blocks plus what only
Fabric knows: this process's rank and device (node-wide meters read once per node, NVML the
GPU this rank trains on), the log folder of ``fabric.logger`` (for ``summary_path="auto"``),
the sum of the ranks' records under DDP, and ``fabric.log_dict`` on global rank 0. It holds
no run state: everything is one :class:`~wattwise.EnergyTracker`, ``energy.tracker``.
``import wattwise.fabric`` imports no framework; the Fabric object is passed in.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Any

from wattwise._lifecycle import ended_status
from wattwise.config import RunContext, TrackerConfig
from wattwise.errors import ConfigurationError
from wattwise.meters.base import Meter
from wattwise.records import EpochRecord, PhaseRecord, StepRecord, metric_keys, reduce_records
from wattwise.tracker import EnergyTracker, EpochBlock, PhaseBlock

__all__ = ["EnergyLogger"]


def _gather(world_size: int, obj: Any) -> list[Any]:
    """Every rank's ``obj`` (a collective under DDP: every rank calls it at the same point)."""
    if world_size <= 1:
        return [obj]
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


class EnergyLogger:
    """Energy of a Lightning Fabric loop, logged per epoch with ``fabric.log_dict``.

    Metric keys are the Lightning callback's (:func:`wattwise.records.metric_keys`, style
    ``"lightning"``): ``energy/train_joules``, ``energy/train_joules_per_sample``,
    ``energy/train_watts``, ``energy/train_joules/<domain>``, the same with ``val_`` and
    ``test_``, step-level ``energy/train_step_*`` (with ``log_every_n_steps``). Each epoch's
    phases are summed over ranks and logged on global rank 0, at step ``epoch`` unless
    :meth:`epoch` is given ``step=``. Unknown values are not logged, never as 0.

    Args:
        fabric: the ``lightning.fabric.Fabric`` (after ``fabric.launch()``).
        meters: ``"auto"`` (default), meter names or :class:`~wattwise.meters.Meter` instances.
        summary_path: the run summary JSON; ``"auto"`` (default) = ``wattwise_summary.json``
            in ``fabric.logger.log_dir`` (no logger: none, said once); None = none. Rank N > 0
            writes ``<stem>.rankN<suffix>``.
        log_every_n_steps: step-level energy every this many batches counted by
            :meth:`add_batch` / :meth:`count_batch`, at most one per ``min_window_s``
            (default None = off).
        min_window_s: shortest step-level window, in seconds (default 1.0).
        idle_baseline_s: seconds of idle power measured at the start (default 0.0 = off).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for ``co2_g`` (default None).
        country_iso_code: ISO 3166 alpha-3 code for codecarbon's offline carbon intensity.
        batch_size_fn: ``batch -> int`` for :meth:`count_batch` (default None = infer).
        print_summary: print the run table on rank 0 when the run ends (default True).
        run_name: a name for the run summary.

    Raises:
        ConfigurationError: a bad argument, at construction.

    Example:
        >>> from wattwise.fabric import EnergyLogger
        >>> from wattwise.testing import FakeMeter
        >>> class Fabric:  # stands in for lightning.fabric.Fabric(accelerator="cpu")
        ...     global_rank = local_rank = 0
        ...     world_size = 1
        ...     loggers = ()
        ...     logged = []
        ...     def log_dict(self, metrics, step=None):
        ...         self.logged.append((step, metrics))
        >>> meter, fabric = FakeMeter(("cpu:package-0",)), Fabric()
        >>> energy = EnergyLogger(fabric, meters=[meter], summary_path=None, print_summary=False)
        >>> with energy:
        ...     with energy.epoch():
        ...         with energy.phase("train"):
        ...             _ = energy.add_batch(32)
        ...             meter.advance(8.0)
        >>> fabric.logged[0][0], fabric.logged[0][1]["energy/train_joules_per_sample"]
        (0, 0.25)
    """

    def __init__(
        self,
        fabric: Any,
        meters: str | Sequence[str | Meter] = "auto",
        *,
        summary_path: str | PathLike[str] | None = "auto",
        log_every_n_steps: int | None = None,
        min_window_s: float = 1.0,
        idle_baseline_s: float = 0.0,
        carbon_intensity_g_per_kwh: float | None = None,
        country_iso_code: str | None = None,
        batch_size_fn: Callable[[Any], int] | None = None,
        print_summary: bool = True,
        run_name: str | None = None,
    ) -> None:
        if not (callable(getattr(fabric, "log_dict", None)) and hasattr(fabric, "global_rank")):
            raise ConfigurationError(
                f"EnergyLogger(fabric={fabric!r}): expected a lightning.fabric.Fabric (with "
                "log_dict and global_rank), e.g. EnergyLogger(Fabric(accelerator='cpu'))")
        if batch_size_fn is not None and not callable(batch_size_fn):
            raise ConfigurationError(
                f"EnergyLogger(batch_size_fn={batch_size_fn!r}): expected None or a callable "
                "batch -> number of samples")
        if not isinstance(print_summary, bool):
            raise ConfigurationError(f"EnergyLogger(print_summary={print_summary!r}): expected "
                                     "True or False")
        self.fabric = fabric
        self.tracker = EnergyTracker(config=TrackerConfig(
            meters=meters, min_window_s=min_window_s, summary_path=summary_path,  # type: ignore[arg-type]
            idle_baseline_s=idle_baseline_s, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
            country_iso_code=country_iso_code, run_name=run_name,
            log_every_n_steps=log_every_n_steps, on_error="warn", owner="EnergyLogger"))
        self._batch_size_fn = batch_size_fn
        self._print = print_summary

    # the run ---------------------------------------------------------------------------------
    def context(self) -> RunContext:
        """This process's :class:`~wattwise.config.RunContext`, from the Fabric object."""
        f = self.fabric
        device = getattr(f, "device", None)
        loggers = getattr(f, "loggers", None) or ()
        log_dir = getattr(loggers[0], "log_dir", None) if loggers else None
        return RunContext.for_process(
            global_rank=int(getattr(f, "global_rank", 0) or 0),
            local_rank=int(getattr(f, "local_rank", 0) or 0),
            world_size=int(getattr(f, "world_size", 1) or 1),
            cuda_device=(getattr(device, "index", None) or 0)
            if getattr(device, "type", None) == "cuda" else None,
            log_dir=None if log_dir is None else str(log_dir),
        )

    def start(self, metadata: Mapping[str, Any] | None = None) -> None:
        """Begin the run (a ``fit`` stage): open the meters, take the first reading.

        Raises:
            MeterUnavailableError: a meter asked for by name cannot open.
        """
        loggers = getattr(self.fabric, "loggers", None) or ()
        if loggers:  # the logger makes its folder first (it warns about a non-empty one)
            self.tracker.guard("opening the logger", getattr, loggers[0], "experiment", None)
        context = self.context()
        lightning = sys.modules.get("lightning")
        head = {"framework": "lightning.fabric",
                "framework_version": getattr(lightning, "__version__", None),
                "world_size": context.world_size, "global_rank": context.global_rank}
        self.tracker.begin_stage("fit", metadata={**head, **(metadata or {})}, context=context)

    def finish(self, status: str = "completed", error: BaseException | None = None
               ) -> dict[str, Any]:
        """End the run: write the final summary, print the table on rank 0; returns it."""
        summary = self.tracker.finish(status, error)  # type: ignore[arg-type]
        if self._print:
            self.tracker.print_table()
        return summary

    def __enter__(self) -> EnergyLogger:
        if self.tracker.stage is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(ended_status(exc), exc)  # type: ignore[arg-type]

    # epochs, phases, batches -----------------------------------------------------------------
    def epoch(self, step: int | None = None) -> _FabricEpoch:
        """``with energy.epoch():`` :meth:`wattwise.EnergyTracker.epoch`, then the epoch's
        phases (summed over ranks) logged with ``fabric.log_dict`` at ``step`` (default: the
        epoch number). An epoch the body raised in is recorded, not logged."""
        return _FabricEpoch(self, self.tracker.epoch(), step)

    def phase(self, phase: str) -> PhaseBlock:
        """``with energy.phase("train"):`` :meth:`wattwise.EnergyTracker.phase`."""
        return self.tracker.phase(phase)

    def add_batch(self, samples: int | None, batches: int = 1) -> StepRecord | None:
        """:meth:`wattwise.EnergyTracker.add_batch`; a step reading that is due is logged."""
        return self._step(self.tracker.add_batch(samples, batches))

    def count_batch(self, batch: Any) -> StepRecord | None:
        """:meth:`wattwise.EnergyTracker.count_batch` with this logger's ``batch_size_fn``."""
        return self._step(self.tracker.count_batch(batch, self._batch_size_fn))

    def _step(self, rec: StepRecord | None) -> StepRecord | None:
        if rec is not None:
            self.tracker.guard("logging step-level energy", self._log, metric_keys(rec, "lightning"),
                               rec.step)
        return rec

    def publish(self, rec: EpochRecord | None, step: int | None = None) -> dict[str, float]:
        """Log an epoch's phases, summed over ranks (a collective under DDP: call it on every
        rank), on global rank 0 at ``step`` (default: the epoch number); returns the metrics."""
        world = int(getattr(self.fabric, "world_size", 1) or 1)
        mine = None if rec is None else dict(rec.phases)
        gathered = _gather(world, (mine, bool(self.tracker.meters)))  # one collective an epoch
        out: dict[str, float] = {}
        for p in sorted({p for phases, _ in gathered if phases for p in phases}):
            recs: list[tuple[PhaseRecord | None, bool]] = [
                (None if phases is None else phases.get(p), m) for phases, m in gathered]
            out.update(metric_keys(reduce_records(recs), "lightning"))
        if out and rec is not None:
            self._log(out, rec.epoch if step is None else step)
        return out

    def _log(self, metrics: dict[str, float], step: int) -> None:
        if metrics and int(getattr(self.fabric, "global_rank", 0) or 0) == 0:
            self.fabric.log_dict(metrics, step=step)


class _FabricEpoch:
    """``with energy.epoch():`` the tracker's epoch block, then the epoch logged."""

    __slots__ = ("_block", "_logger", "_step")

    def __init__(self, logger: EnergyLogger, block: EpochBlock, step: int | None) -> None:
        self._logger, self._block, self._step = logger, block, step

    def __enter__(self) -> EpochBlock:
        return self._block.__enter__()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._block.__exit__(exc_type, exc, tb)
        if exc is None:
            logger = self._logger
            logger.tracker.guard("logging the energy metrics", logger.publish,
                                 self._block.record, self._step)
