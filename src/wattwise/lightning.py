"""PyTorch Lightning adapter: the drop-in :class:`EnergyMonitor` callback.

One line gives joules per sample and per epoch in every Lightning logger::

    from wattwise.lightning import EnergyMonitor
    trainer = lightning.pytorch.Trainer(callbacks=[EnergyMonitor()])

**Two Lightning packages.** Lightning checks ``isinstance(callback, Callback)`` against the
``Callback`` class of its *own* package, and ``lightning.pytorch.Callback`` and
``pytorch_lightning.Callback`` are different classes. So this module builds the callback once per
package, lazily, from one framework-free implementation (:class:`_EnergyMonitorImpl`):

* ``wattwise.lightning.EnergyMonitor`` subclasses ``lightning.pytorch.Callback`` (or, when only
  the standalone ``pytorch-lightning`` package is installed, ``pytorch_lightning.Callback``);
* ``wattwise.lightning.pl.EnergyMonitor`` (``from wattwise.lightning.pl import EnergyMonitor``)
  always subclasses ``pytorch_lightning.Callback``.

Both classes are named ``EnergyMonitor`` (same checkpoint ``state_key``), are picklable (for
``ddp_spawn``) and behave identically. Inheriting from both ``Callback`` classes at once would also
pass both checks but would import both packages for every user; building per package imports only
the one asked for. ``import wattwise`` imports neither; ``import wattwise.lightning`` imports no
framework either - the classes are built on first attribute access.

The arithmetic (windows, joules per sample, summaries) lives in
:class:`wattwise.tracker.EnergyTracker`; this module only maps Lightning hooks to tracker calls,
reduces totals across DDP ranks and logs them.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import types
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattwise._adapter import AdapterMixin, rank_summary_path
from wattwise.errors import (
    ConfigurationError,
    MeterUnavailableError,
)
from wattwise.meters.base import Meter

if TYPE_CHECKING:
    from wattwise.tracker import EnergyTracker, PhaseRecord

__all__ = ["METRIC_QUANTITIES", "EnergyMonitor"]  # noqa: F822 - built lazily by __getattr__

log = logging.getLogger("wattwise")

#: Quantities logged per phase and epoch (the ``<quantity>`` in ``energy/<phase>_<quantity>``),
#: plus ``joules/<domain>`` for every measured domain. Other quantities of
#: :meth:`wattwise.tracker.PhaseRecord.metrics` (seconds, samples, joules_per_batch) stay in the
#: run summary: each logged key costs time at every epoch end.
METRIC_QUANTITIES: tuple[str, ...] = (
    "joules",
    "joules_per_sample",
    "watts",
    "active_joules",
    "co2_g",
)

_PHASE_KEY = {"train": "train", "validate": "val", "test": "test", "predict": "predict"}

_DOC = """Measure the energy of training, validation, test and predict; log it per epoch.

    Joules come from hardware counters (NVML for GPUs, RAPL for CPUs) read at window
    boundaries only (epoch and phase starts and ends), never per batch unless step-level
    logging is on. Samples per batch are counted like Lightning does.

    Metric keys (published once per epoch and phase to ``trainer.callback_metrics`` - so
    ``EarlyStopping`` and ``ModelCheckpoint`` can monitor them - and to every logger in
    ``trainer.loggers`` at the trainer's global step; the destinations of
    ``pl_module.log(..., on_epoch=True)`` at a tenth of its per-epoch cost):

    * ``energy/train_joules`` - joules of the epoch's training batches (validation excluded),
      summed over all ranks and domains;
    * ``energy/train_joules_per_sample`` - that divided by the training samples of the epoch,
      summed over ranks (sum J / sum samples, never an average of per-batch ratios);
    * ``energy/train_watts`` - joules / wall seconds of the train windows (seconds: the
      longest rank);
    * ``energy/train_active_joules`` (when an idle baseline was measured) and
      ``energy/train_co2_g`` (when a carbon intensity is known);
    * ``energy/train_joules/<domain>`` per measured domain, e.g. ``energy/train_joules/gpu:0``,
      ``energy/train_joules/cpu:package-0`` (same-named domains on several nodes add up);
    * the same with ``val_`` (logged at each validation run's end; the sanity check is not
      counted) and ``test_`` instead of ``train_``;
    * step-level (``log_every_n_steps``): ``energy/train_step_joules``,
      ``energy/train_step_joules_per_sample``, ``energy/train_step_watts``, written to
      ``trainer.loggers`` from rank 0 only (rank 0's meters, no cross-rank reduction), over
      windows no shorter than ``min_window_s``.

    When the numbers are estimates (no hardware counter, e.g. codecarbon's model) every key
    starts with ``energy_estimated/`` instead of ``energy/``. Unknown values (a window shorter
    than a counter's update period, a failed meter) are not logged at all - never as 0.

    ``EarlyStopping(monitor="energy/train_joules_per_sample", check_on_train_epoch_end=True)``:
    train metrics are logged at the train epoch end, after the epoch's validation, so a monitor
    of a ``train`` key needs ``check_on_train_epoch_end=True`` when there is a validation loop.

    Multi-process (DDP): every rank opens the device meters of its own GPU; node-wide meters
    (RAPL, codecarbon) are opened on local rank 0 only; per-epoch totals are gathered across
    ranks (one ``all_gather`` per logged phase) and logged once, identical on every rank. The run
    summary file is each rank's own view (rank 0 writes ``summary_path``, rank N writes
    ``<stem>.rankN<suffix>``).

    Checkpoints: the cumulative totals are in the callback state, so resuming with
    ``trainer.fit(..., ckpt_path=...)`` continues them. An exception or Ctrl-C in ``fit`` writes
    the summary with status ``"failed"`` or ``"interrupted"``. A meter failing mid-run is
    reported once and dropped; training continues.

    Args:
        meters: ``"auto"``, a list of meter names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
            ``"codecarbon"``) or :class:`~wattwise.meters.Meter` instances such as
            ``RaplMeter(root=...)``.
        log_every_n_steps: log step-level energy every this many training batches (at the
            earliest ``min_window_s`` after the previous step window); None (default) = off.
        min_window_s: shortest step-level window, in seconds (default 1.0).
        summary_path: where the run summary JSON is written (rewritten after every epoch,
            final at the end, status ``failed``/``interrupted`` on errors); ``"auto"`` (default)
            = ``wattwise_summary.json`` in ``trainer.log_dir`` (next to the logger's files or
            checkpoints); None writes none.
        idle_baseline_s: seconds of idle power measured at fit start (default 0.0 = off).
        advice: run the cache-aware sizing check on the real model and first batch at fit
            start and warn (:class:`~wattwise.errors.SizingWarning`) when the backward working
            set is far from a cache boundary (default True).
        coefficients: energy-model coefficients for the sizing check (None = bundled).
        hardware: hardware description for the sizing check (default ``"auto"``).
        batch_size_fn: ``batch -> int`` samples in a batch, for batches Lightning's
            ``extract_batch_size`` cannot read (default None = infer).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for ``co2_g`` figures (default None).
        country_iso_code: ISO 3166 alpha-3 code for codecarbon's offline carbon intensity.
        print_summary: print the run table at the end of ``fit`` on rank 0 (default True).
        run_name: a name for the run summary (default None).

    Raises:
        ConfigurationError: on a bad argument (at construction), or at the first batch when
            its sample count can be inferred neither by ``batch_size_fn`` nor from the batch.

    Example:
        >>> from wattwise.lightning import EnergyMonitor
        >>> from wattwise.testing import FakeMeter
        >>> monitor = EnergyMonitor(meters=[FakeMeter(("cpu:package-0",))], print_summary=False)
        >>> type(monitor).__name__
        'EnergyMonitor'
    """


def _trainer_fn(trainer: Any) -> str:
    """``"fit"``, ``"validate"``, ``"test"`` or ``"predict"`` (the value of ``trainer.state.fn``)."""
    fn = getattr(getattr(trainer, "state", None), "fn", None)
    return str(getattr(fn, "value", fn))


def _dataset_size(pl_module: Any) -> int | None:
    """Samples in the training dataset when the loader's dataset has a length, else None."""
    try:
        loader = pl_module.trainer.train_dataloader
        loaders = loader if isinstance(loader, (list, tuple)) else [loader]
        return int(sum(len(dl.dataset) for dl in loaders))
    except Exception:  # noqa: BLE001 - iterable datasets, combined loaders of other shapes: unknown
        return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _EnergyMonitorImpl(AdapterMixin):
    """The framework-free body of ``EnergyMonitor``; see the built classes for the docs."""

    _package: str = "lightning.pytorch"  # set by the built subclasses

    def __init__(
        self,
        meters: str | Sequence[str | Meter] = "auto",
        *,
        log_every_n_steps: int | None = None,
        min_window_s: float = 1.0,
        summary_path: str | PathLike[str] | None = "auto",
        idle_baseline_s: float = 0.0,
        advice: bool = True,
        coefficients: Any = None,
        hardware: Any = "auto",
        batch_size_fn: Callable[[Any], int] | None = None,
        carbon_intensity_g_per_kwh: float | None = None,
        country_iso_code: str | None = None,
        print_summary: bool = True,
        run_name: str | None = None,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        if log_every_n_steps is not None and (not _is_int(log_every_n_steps) or log_every_n_steps < 1):
            raise ConfigurationError(
                f"{name}(log_every_n_steps={log_every_n_steps!r}): expected None (no step-level "
                "metrics) or an int >= 1 (log every that many training batches)"
            )
        if batch_size_fn is not None and not callable(batch_size_fn):
            raise ConfigurationError(
                f"{name}(batch_size_fn={batch_size_fn!r}): expected None or a callable "
                "batch -> number of samples, e.g. batch_size_fn=lambda b: len(b['ids'])"
            )
        for arg, val in (("advice", advice), ("print_summary", print_summary)):
            if not isinstance(val, bool):
                raise ConfigurationError(f"{name}({arg}={val!r}): expected True or False")
        self._tracker_kwargs: dict[str, Any] = dict(
            meters=meters if isinstance(meters, str) else list(meters),
            min_window_s=min_window_s,
            summary_path=None if summary_path == "auto" else summary_path,
            idle_baseline_s=idle_baseline_s,
            carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
            country_iso_code=country_iso_code,
            run_name=run_name,
        )
        # The tracker's constructor validates the shared arguments (and only validates).
        from wattwise.tracker import EnergyTracker

        EnergyTracker(**self._tracker_kwargs)
        self._summary_auto = summary_path == "auto"
        self._log_every_n_steps = log_every_n_steps
        self._min_window_s = float(min_window_s)
        self._advice = advice
        self._coefficients = coefficients
        self._hardware = hardware
        self._batch_size_fn = batch_size_fn
        self._print_summary = print_summary
        self._reset_run_state()
        self._restored_state: Mapping[str, Any] | None = None

    # ------------------------------------------------------------------------------------------
    # per-run state
    def _reset_run_state(self) -> None:
        self.tracker: EnergyTracker | None = None
        self._started = False
        self._finished = False
        self._broken = False
        self._window_open = False
        self._pending_samples = 0  # train samples/batches counted since the last reading
        self._pending_batches = 0
        self._train_paused = False
        self._advice_pending = False
        self._steps_since_log = 0
        self._last_step_read_s = 0.0
        self._cuda_device: Any = None
        self._tensor_type: Any = None
        self._extract_batch_size: Callable[[Any], int] | None = None
        self._world_size = 1
        self._all_domains: list[str] = []
        self._global_rank = 0

    def _make_tracker(self, trainer: Any) -> EnergyTracker:
        from wattwise.tracker import EnergyTracker

        kwargs = dict(self._tracker_kwargs)
        root = getattr(trainer.strategy, "root_device", None)
        world = int(getattr(trainer, "world_size", 1) or 1)
        local_rank = int(getattr(trainer, "local_rank", 0) or 0)
        global_rank = int(getattr(trainer, "global_rank", 0) or 0)
        gpu_devices: list[int] | None
        if root is not None and getattr(root, "type", None) == "cuda":
            gpu_devices = [root.index if root.index is not None else 0]
        elif world > 1 and local_rank != 0:
            gpu_devices = []  # CPU DDP: GPUs (if any) are read by local rank 0 only
        else:
            gpu_devices = None
        if self._summary_auto:  # trainer.log_dir: the same folder on every rank (broadcast)
            kwargs["summary_path"] = Path(trainer.log_dir or ".") / "wattwise_summary.json"
        kwargs["summary_path"] = rank_summary_path(kwargs.get("summary_path"), global_rank)
        meters = kwargs["meters"]
        if local_rank != 0 and not isinstance(meters, str):
            # node-wide meter instances (RAPL, codecarbon) are read by local rank 0 only
            kept: list[Any] = []
            for m in meters:
                if isinstance(m, Meter) and m.scope == "node":
                    m.close()
                else:
                    kept.append(m)
            # nothing left: this rank measures its own devices only ("auto" honours node_meters)
            kwargs["meters"] = kept or "auto"
        return EnergyTracker(**kwargs, node_meters=local_rank == 0, gpu_devices=gpu_devices)

    # ------------------------------------------------------------------------------------------
    # helpers
    def _sync(self) -> None:
        if self._cuda_device is not None:
            import torch

            torch.cuda.synchronize(self._cuda_device)

    def _batch_size(self, batch: Any) -> int:
        fn = self._batch_size_fn
        if fn is not None:
            n = fn(batch)
            if not _is_int(n) or n < 0:
                raise ConfigurationError(
                    f"EnergyMonitor(batch_size_fn={fn!r}) returned {n!r} for a batch; expected "
                    "an int >= 0 (the number of samples in the batch)"
                )
            return int(n)
        # fast paths by exact type (the common cases; a few hundred ns): a tensor, or a
        # tuple/list whose first item is a tensor - Lightning's extract_batch_size returns that
        # tensor's first dimension too; anything else goes through extract_batch_size
        t = self._tensor_type
        kind = type(batch)
        if kind is tuple or kind is list:
            if batch and type(batch[0]) is t and batch[0].ndim:
                return batch[0].shape[0]  # type: ignore[no-any-return]
        elif kind is t and batch.ndim:
            return batch.shape[0]  # type: ignore[no-any-return]
        assert self._extract_batch_size is not None
        try:
            return int(self._extract_batch_size(batch))
        except Exception as e:  # noqa: BLE001 - measurement never kills training
            raise ConfigurationError(
                f"EnergyMonitor cannot count the samples in a batch of type "
                f"{type(batch).__name__!r} ({e}); pass EnergyMonitor(batch_size_fn=...), a "
                "callable batch -> number of samples, e.g. batch_size_fn=lambda b: len(b['ids'])"
            ) from e

    def _prefix(self, estimated: bool) -> str:
        return "energy_estimated/" if estimated else "energy/"

    def _metrics(self, rec: PhaseRecord) -> dict[str, float]:
        flat = rec.metrics()
        prefix = self._prefix(rec.estimated) + _PHASE_KEY.get(rec.phase, rec.phase) + "_"
        out: dict[str, float] = {}
        for q, v in flat.items():
            if v is None or not math.isfinite(v):
                continue
            if q in METRIC_QUANTITIES or q.startswith("joules/"):
                out[prefix + q] = float(v)
        return out

    # ------------------------------------------------------------------------------------------
    # distributed reduction
    def _gather_domains(self, trainer: Any, error: MeterUnavailableError | None = None) -> None:
        """Learn every rank's domains (a collective under DDP) and raise on every rank when a
        meter asked for by name could not open on any of them."""
        mine: list[str] = []
        if self.tracker is not None and not self._broken:
            mine = sorted({d for m in self.tracker.meters for d in m.domains})
        errors = [f"rank {self._global_rank}: {error}"] if error is not None else []
        if self._world_size > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                gathered: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, (mine, errors))
                mine = sorted({d for domains, _ in gathered for d in domains})
                errors = [e for _, errs in gathered for e in errs]
        self._all_domains = mine
        if error is not None:
            raise error
        if errors:
            raise MeterUnavailableError("; ".join(errors))

    def _reduce(self, trainer: Any, pl_module: Any, rec: PhaseRecord | None) -> PhaseRecord | None:
        """Sum joules, samples and batches over ranks (seconds: the longest rank).

        Every rank must call this at the same hook (it is a collective); a rank whose record is
        None (its measurement failed) makes the joules unknown.
        """
        if self._world_size <= 1:
            return rec
        import torch

        from wattwise.tracker import PhaseRecord

        nan = float("nan")

        def f(v: float | None) -> float:
            return nan if v is None else float(v)

        if rec is None:
            vec = [1.0, nan, 0.0, 0.0, 0.0, 0.0, nan, nan] + [nan] * len(self._all_domains)
            phase, epoch = "unknown", -1
        else:
            vec = self._row(rec)
            phase, epoch = rec.phase, rec.epoch
        t = torch.tensor(vec, dtype=torch.float64, device=pl_module.device)
        rows = trainer.strategy.all_gather(t).reshape(-1, len(vec)).cpu().tolist()

        def total(col: int) -> float | None:
            vals = [r[col] for r in rows if r[0] > 0]
            if not vals or any(math.isnan(v) for v in vals):
                return None
            return float(sum(vals))

        joules = total(1)
        seconds = max(r[2] for r in rows)
        samples = int(round(sum(r[3] for r in rows)))
        batches = int(round(sum(r[4] for r in rows)))
        domains: dict[str, float | None] = {}
        for i, d in enumerate(self._all_domains):
            domains[d] = total(8 + i)
        if rec is None:
            return None
        return PhaseRecord.from_sums(
            phase,
            epoch,
            joules=joules,
            joules_by_domain=domains,
            seconds=seconds,
            samples=samples,
            batches=batches,
            estimated=any(r[5] > 0 for r in rows),
            active_joules=total(6),
            co2_g=total(7),
        )

    def _row(self, rec: PhaseRecord) -> list[float]:
        nan = float("nan")

        def f(v: float | None) -> float:
            return nan if v is None else float(v)

        assert self.tracker is not None
        has_meters = 1.0 if self.tracker.meters else 0.0
        vec = [
            has_meters,
            f(rec.joules) if has_meters else 0.0,
            float(rec.seconds),
            float(rec.samples),
            float(rec.batches),
            1.0 if rec.estimated else 0.0,
            f(rec.active_joules) if has_meters else 0.0,
            f(rec.co2_g) if has_meters else 0.0,
        ]
        by_dom = rec.joules_by_domain
        vec += [f(by_dom[d]) if d in by_dom else 0.0 for d in self._all_domains]
        return vec

    def _log_record(self, trainer: Any, pl_module: Any, rec: PhaseRecord | None) -> None:
        """Publish a finished phase record to ``trainer.callback_metrics`` and every logger.

        The same two destinations ``pl_module.log(..., on_epoch=True)`` reaches, written
        directly: the values are final (already reduced across ranks by :meth:`_reduce`), so
        Lightning's per-key result bookkeeping (~0.3 ms per key per epoch, measured with
        ``benchmarks/overhead.py``) buys nothing here. ``callback_metrics`` is the dict
        ``EarlyStopping`` and ``ModelCheckpoint`` read; Lightning clears it only when a new
        ``fit``/``validate``/``test`` run starts.
        """
        rec = self._reduce(trainer, pl_module, rec)
        if rec is None:
            return
        metrics = self._metrics(rec)
        if not metrics:
            return
        if _trainer_fn(trainer) != "fit":
            # trainer.validate/test: one epoch, so cost is no concern, and pl_module.log puts
            # the values in the results those calls return
            ddp = self._world_size > 1
            for key, value in metrics.items():  # identical on every rank after _reduce
                pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=ddp,
                              reduce_fx="max" if ddp else "mean", batch_size=1)
            return
        import torch

        callback_metrics = trainer.callback_metrics
        for key, value in metrics.items():
            callback_metrics[key] = torch.tensor(value)
        if self._global_rank == 0 and trainer.loggers:
            # the step Lightning itself logs epoch-end metrics at, so the curves line up with
            # the user's own epoch metrics: batches stepped so far, minus one for train epochs
            loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
            step = int(getattr(loop, "_batches_that_stepped", trainer.global_step))
            if rec.phase == "train":
                step = max(step - 1, 0)
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

    # ------------------------------------------------------------------------------------------
    # lifecycle
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        import importlib

        import torch

        self._reset_run_state()
        self._tensor_type = torch.Tensor
        data = importlib.import_module(f"{self._package}.utilities.data")
        self._extract_batch_size = data.extract_batch_size
        self._world_size = int(getattr(trainer, "world_size", 1) or 1)
        self._global_rank = int(getattr(trainer, "global_rank", 0) or 0)
        self.tracker = self._make_tracker(trainer)

    def _ensure_started(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._started or self.tracker is None:
            return
        self._started = True
        device = getattr(pl_module, "device", None)
        self._cuda_device = device if getattr(device, "type", None) == "cuda" else None
        start_error: MeterUnavailableError | None = None
        try:
            if self._restored_state is not None:
                self.tracker.load_state_dict(self._restored_state)
            self.tracker.start(
                hardware=None,
                metadata={
                    "framework": self._package,
                    "framework_version": getattr(
                        sys.modules.get(self._package.split(".")[0]), "__version__", None
                    ),
                    "stage": stage,
                    "world_size": self._world_size,
                    "global_rank": self._global_rank,
                    "model": type(pl_module).__name__,
                    "precision": str(getattr(trainer, "precision", "")),
                },
            )
        except MeterUnavailableError as e:
            # a meter asked for by name cannot open: raise before the first step (on every
            # rank, see _gather_domains), with the fix in the message - never train unmeasured
            # when the user asked for a specific counter
            start_error = e
        except Exception as e:  # noqa: BLE001 - measurement never kills training
            self._guard("starting the energy tracker", e)
        self._gather_domains(trainer, start_error)  # a collective under DDP: every rank calls it
        self._advice_pending = self._advice and stage == "fit" and not self._broken

    def _start_window(self, phase: str, epoch: int) -> None:
        if self._broken or self.tracker is None:
            return
        try:
            self._sync()
            self.tracker.start_window(phase, epoch)
            self._window_open = True
        except Exception as e:  # noqa: BLE001 - measurement never kills training
            self._guard(f"starting a {phase} window", e)

    def _end_window(self) -> PhaseRecord | None:
        if self._broken or self.tracker is None or not self._window_open:
            return None
        self._window_open = False
        try:
            self._flush_batches()
            self._sync()
            return self.tracker.end_window()
        except Exception as e:  # noqa: BLE001 - measurement never kills training
            self._guard("ending a window", e)
            return None

    def _flush_batches(self) -> None:
        """Hand the train batches counted since the last reading to the tracker."""
        if self._pending_batches:
            samples, batches = self._pending_samples, self._pending_batches
            self._pending_samples = self._pending_batches = 0
            self.tracker.add_batch(samples, batches)  # type: ignore[union-attr]

    def _end_epoch(self) -> Any:
        if self._broken or self.tracker is None:
            return None
        try:
            return self.tracker.end_epoch()
        except Exception as e:  # noqa: BLE001 - measurement never kills training
            self._guard("ending an epoch", e)
            return None

    def _finish(self, status: str, error: BaseException | None = None) -> dict[str, Any] | None:
        if self.tracker is None or self._finished:
            return None
        self._finished = True
        try:
            if self._window_open:
                self._flush_batches()
                self._sync()
            self._window_open = False
            summary = self.tracker.finish(status, error)  # type: ignore[arg-type]
            self._restored_state = self.tracker.state_dict()
            return summary
        except Exception as e:  # noqa: BLE001 - measurement never kills training
            self._guard("writing the run summary", e)
            return None

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        summary = self._finish("completed")
        if stage == "fit":
            self._print(summary)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        status = "interrupted" if isinstance(exception, KeyboardInterrupt) else "failed"
        summary = self._finish(status, exception)
        self._print(summary)

    def state_dict(self) -> dict[str, Any]:
        if self.tracker is not None and self._started and not self._broken:
            try:
                return {"tracker": self.tracker.state_dict()}
            except Exception as e:  # noqa: BLE001 - measurement never kills training
                self._guard("saving the energy totals", e)
        return {"tracker": dict(self._restored_state)} if self._restored_state else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        tracker_state = state_dict.get("tracker")
        if tracker_state:
            self._restored_state = tracker_state

    # ------------------------------------------------------------------------------------------
    # fit
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._ensure_started(trainer, pl_module, "fit")

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._train_paused = False
        self._start_window("train", trainer.current_epoch)
        self._steps_since_log = 0
        self._last_step_read_s = time.monotonic()

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._train_paused or self._advice_pending:
            if self._train_paused:  # resume after a mid-epoch validation
                self._train_paused = False
                self._start_window("train", trainer.current_epoch)
            if self._advice_pending:
                self._advice_pending = False
                self._check_sizing(pl_module, batch)

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # the per-batch hot path: count samples and batches locally (handed to the tracker at
        # the next reading), nothing else - no meter read, no clock, no call for the common
        # batch shapes (the fast path of _batch_size, inlined)
        if self._window_open:
            kind = type(batch)
            first: Any = batch[0] if (kind is tuple or kind is list) and batch else None
            if type(first) is self._tensor_type and first.ndim and self._batch_size_fn is None:
                self._pending_samples += first.shape[0]
            else:
                self._pending_samples += self._batch_size(batch)
            self._pending_batches += 1
            if self._log_every_n_steps is not None:
                self._steps_since_log += 1
                if self._steps_since_log >= self._log_every_n_steps:
                    self._step_log(trainer)

    def _step_log(self, trainer: Any) -> None:
        now = time.monotonic()
        if now - self._last_step_read_s < self._min_window_s:
            return  # no sync, no read before the window is long enough
        self._steps_since_log = 0
        self._last_step_read_s = now
        try:
            self._flush_batches()
            self._sync()
            rec = self.tracker.step_reading()  # type: ignore[union-attr]
        except Exception as e:  # noqa: BLE001 - measurement never kills training
            self._guard("a step-level reading", e)
            return
        if rec is None or self._global_rank != 0:
            return
        prefix = self._prefix(rec.estimated) + "train_step_"
        values = {
            prefix + "joules": rec.joules,
            prefix + "joules_per_sample": rec.joules_per_sample,
            prefix + "watts": rec.watts,
        }
        metrics = {k: float(v) for k, v in values.items() if v is not None}
        if metrics:
            for lg in trainer.loggers:
                lg.log_metrics(metrics, step=trainer.global_step)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._end_window()
        self._train_paused = False
        epoch = self._end_epoch()
        train = epoch.phases.get("train") if epoch is not None else None
        self._log_record(trainer, pl_module, train)

    def _check_sizing(self, pl_module: Any, batch: Any) -> None:
        if self._global_rank != 0 or self.tracker is None:
            return
        try:
            from wattwise.sizing import check_torch_model, record_advice
        except ImportError as e:
            log.debug("EnergyMonitor: sizing check unavailable (%r)", e)
            return
        try:
            advice = check_torch_model(
                pl_module,
                batch,
                batch_size=self._batch_size(batch),
                n_samples=_dataset_size(pl_module),
                hardware=self._hardware,
                coefficients=self._coefficients,
            )
        except Exception as e:  # noqa: BLE001 - the advice never breaks training
            log.info("EnergyMonitor: no sizing advice for this model: %r", e)
            return
        record_advice(self.tracker, advice)

    # ------------------------------------------------------------------------------------------
    # validation (inside fit, or trainer.validate)
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        self._ensure_started(trainer, pl_module, "validate")
        if self._window_open:  # pause the train window: validation is its own phase
            self._end_window()
            self._train_paused = True

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        self._start_window("validate", trainer.current_epoch)

    def on_validation_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._window_open and not trainer.sanity_checking:
            self.tracker.add_batch(self._batch_size(batch))  # type: ignore[union-attr]

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        rec = self._end_window()
        self._log_record(trainer, pl_module, rec)
        if _trainer_fn(trainer) == "validate":
            self._end_epoch()

    # test ------------------------------------------------------------------------------------
    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._ensure_started(trainer, pl_module, "test")

    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start_window("test", trainer.current_epoch)

    def on_test_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._window_open:
            self.tracker.add_batch(self._batch_size(batch))  # type: ignore[union-attr]

    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        rec = self._end_window()
        self._log_record(trainer, pl_module, rec)
        self._end_epoch()

    # predict (no logging is allowed in predict hooks: the summary has the numbers) -----------
    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._ensure_started(trainer, pl_module, "predict")

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._start_window("predict", trainer.current_epoch)

    def on_predict_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._window_open:
            self.tracker.add_batch(self._batch_size(batch))  # type: ignore[union-attr]

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._end_window()
        self._end_epoch()


# ----------------------------------------------------------------------------------------------
# per-package classes, built lazily

_BUILT: dict[str, type] = {}


def _build(package: str, module_name: str) -> type:
    cls = _BUILT.get(package)
    if cls is not None:
        return cls
    import importlib

    try:
        callback_base = importlib.import_module(package).Callback
    except ImportError as e:
        pip = "lightning" if package == "lightning.pytorch" else "pytorch-lightning"
        raise ImportError(
            f"wattwise EnergyMonitor for {package!r} needs that package: pip install {pip}"
        ) from e
    cls = type(
        "EnergyMonitor",
        (_EnergyMonitorImpl, callback_base),
        {"__module__": module_name, "__qualname__": "EnergyMonitor", "__doc__": _DOC,
         "_package": package},
    )
    _BUILT[package] = cls
    return cls


def _default_package() -> str:
    import importlib.util

    try:
        if importlib.util.find_spec("lightning") is not None:
            return "lightning.pytorch"
    except (ImportError, ValueError):
        pass
    return "pytorch_lightning"


def __getattr__(name: str) -> Any:
    if name == "EnergyMonitor":
        return _build(_default_package(), __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pl_getattr(name: str) -> Any:
    if name == "EnergyMonitor":
        return _build("pytorch_lightning", pl.__name__)
    raise AttributeError(f"module {pl.__name__!r} has no attribute {name!r}")


#: ``wattwise.lightning.pl``: the same callback for the standalone ``pytorch_lightning`` package
#: (``from wattwise.lightning.pl import EnergyMonitor``).
pl = types.ModuleType(f"{__name__}.pl", "EnergyMonitor for the standalone pytorch_lightning package.")
pl.__getattr__ = _pl_getattr  # type: ignore[method-assign]
pl.__all__ = ["EnergyMonitor"]  # type: ignore[attr-defined]
sys.modules.setdefault(pl.__name__, pl)
