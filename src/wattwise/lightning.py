"""PyTorch Lightning adapter: the drop-in :class:`EnergyMonitor` callback.

``Trainer(callbacks=[EnergyMonitor()])`` gives joules per sample and per epoch in every logger.
Lightning checks ``isinstance(callback, Callback)`` against its *own* package's class, so the
callback is built lazily per package from one framework-free body: ``wattwise.lightning.
EnergyMonitor`` subclasses ``lightning.pytorch.Callback`` (or ``pytorch_lightning``'s when only
that is installed), ``wattwise.lightning.pl.EnergyMonitor`` always ``pytorch_lightning``'s.
``import wattwise.lightning`` imports no framework.

The callback holds no run state: every hook is a call on one
:class:`~wattwise.tracker.EnergyTracker` (windows, epochs, stages, clocks, restored state, the
failure guard). What is left here is Lightning: which hook is which phase, the ``all_gather``
of phase records under DDP, and publishing the metrics.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any

from wattwise import _distributed
from wattwise._lifecycle import ended_status
from wattwise.config import CallbackOptions, RunContext
from wattwise.errors import ConfigurationError
from wattwise.forecast import PROJECTED_KEY
from wattwise.meters.base import Meter
from wattwise.records import (
    MEASUREMENT_TEXT_TAG,
    PhaseRecord,
    StepRecord,
    grouped,
    metric_keys,
    progress_bar_metrics,
)
from wattwise.samples import epoch_samples
from wattwise.tracker import EnergyTracker

__all__ = ["EnergyMonitor"]  # noqa: F822 - built lazily by __getattr__

_DOC = """Measure the energy of training, validation, test and predict; log it per epoch.

    Joules come from hardware counters (NVML, RAPL) read at window boundaries only, never
    per batch unless step-level logging is on. Metric keys, once per epoch and phase, go where
    ``pl_module.log(..., on_epoch=True)`` puts them: ``trainer.callback_metrics`` (for
    ``EarlyStopping``, ``ModelCheckpoint``), ``trainer.logged_metrics`` and every logger, with
    ``epoch`` (each logger's ``group_separator`` in place of ``/``):

    * ``energy/train_joules``, ``energy/train_joules_per_sample``, ``energy/train_watts``
      (joules / wall seconds), ``energy/train_active_joules`` (with an idle baseline),
      ``energy/train_co2_g`` (with a carbon intensity), ``energy/train_joules/<domain>``
      (``gpu_0``, ``cpu_package-0``: letters, digits, ``_``, ``-``, ``.``);
    * the same with ``val_``, ``test_`` (and ``predict_`` in the summary only);
    * ``energy/estimated``: 1.0 when the joules are estimates (no hardware counter readable),
      0.0 when measured. The keys are the same on every machine, so a config written on a
      GPU box runs on a laptop; the estimate is said by this key, the console table, the run
      summary and a TensorBoard text entry ``wattwise/measurement``;
    * step-level (``log_every_n_steps``): ``energy/train_step_joules``,
      ``energy/train_step_joules_per_sample``, ``energy/train_step_watts`` (rank 0's meters).

    Unknown values are not logged at all, never as 0: a batch whose samples cannot be counted
    (pass ``batch_size_fn``) leaves J/sample unknown, with one warning. A train key monitored
    with a validation loop needs ``EarlyStopping(..., check_on_train_epoch_end=True)``.

    **Runs.** The summary holds every stage of a run (``fit`` and the ``validate``/``test``/
    ``predict`` calls after it), each with its own epochs. A second ``fit`` is a new run, in
    ``<stem>.run2<suffix>``; ``fit(ckpt_path=...)`` carries totals over, a mid-epoch checkpoint
    continues its epoch. Errors record ``"failed"``/``"interrupted"``. Meters you pass stay open.
    **DDP**: node-wide meters are read on local rank 0 only; records are summed over ranks;
    rank N writes ``<stem>.rankN<suffix>``.

    Args:
        meters: ``"auto"``, meter names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
            ``"codecarbon"``) or :class:`~wattwise.meters.Meter` instances.
        log_every_n_steps: step-level energy every this many training batches, at the
            earliest ``min_window_s`` after the previous one; None (default) = off.
        min_window_s: shortest step-level window, in seconds (default 1.0).
        summary_path: the run summary JSON; ``"auto"`` (default) = ``wattwise_summary.json``
            in ``trainer.log_dir`` (with ``logger=False``: none, said once); None = none.
        idle_baseline_s: seconds of idle power measured at the start (default 0.0 = off).
        advice: run the cache-aware sizing check on the first batch and warn
            (:class:`~wattwise.errors.SizingWarning`) when the backward working set is far
            from a cache boundary (default True).
        coefficients: energy-model coefficients for the sizing check (None = bundled).
        hardware: hardware description for the sizing check (default ``"auto"``).
        batch_size_fn: ``batch -> int`` samples in a batch, for batches whose size cannot
            be read from their first tensor (default None = infer).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for ``co2_g`` figures (default None).
        country_iso_code: ISO 3166 alpha-3 code for codecarbon's offline carbon intensity.
        print_summary: print the run table at the end of ``fit`` on rank 0 (default True).
        run_name: a name for the run summary (default None).
        prog_bar: show the joules per sample (``energy/train_joules_per_sample``,
            ``energy/val_joules_per_sample``) in the progress bar (default False).

    Raises:
        ConfigurationError: on a bad argument, at construction.
        MeterUnavailableError: before the first step (on every rank) when a meter asked for
            by name cannot open.

    Example:
        >>> from wattwise.lightning import EnergyMonitor
        >>> from wattwise.testing import FakeMeter
        >>> monitor = EnergyMonitor(meters=[FakeMeter(("cpu:package-0",))], print_summary=False)
        >>> type(monitor).__name__
        'EnergyMonitor'
    """


def _fn(trainer: Any) -> str:
    """``"fit"``, ``"validate"``, ``"test"`` or ``"predict"`` (``trainer.state.fn``)."""
    fn = getattr(getattr(trainer, "state", None), "fn", None)
    return str(getattr(fn, "value", fn))


def _tensorboard_event(logger: Any, metrics: dict[str, float], step: int) -> bool:
    """Write ``metrics`` to a Lightning ``TensorBoardLogger`` as ONE event holding every
    scalar (what its ``log_metrics`` writes as one event per key, each waking TensorBoard's
    writer thread); False when ``logger`` is anything else, so it logs as usual."""
    if type(logger).__name__ != "TensorBoardLogger" or not type(logger).__module__.endswith(
            "loggers.tensorboard"):
        return False
    experiment = logger.experiment
    writer = getattr(experiment, "_get_file_writer", None)
    if writer is None or not type(experiment).__module__.startswith("torch.utils.tensorboard"):
        return False  # tensorboardX or another writer: the logger's own path
    try:
        from tensorboard.compat.proto.summary_pb2 import Summary

        prefix = getattr(logger, "_prefix", "") or ""
        join = getattr(logger, "LOGGER_JOIN_CHAR", "-")
        summary = Summary(value=[
            Summary.Value(tag=f"{prefix}{join}{k}" if prefix else k, simple_value=float(v))
            for k, v in metrics.items()])
    except Exception:  # noqa: BLE001 - an unexpected writer or proto: the logger's own path
        return False
    writer().add_summary(summary, step)
    return True


class _EnergyMonitorImpl:
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
        prog_bar: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(prog_bar, bool):
            raise ConfigurationError(f"EnergyMonitor(prog_bar={prog_bar!r}): expected True (show "
                                     "J/sample in the progress bar) or False")
        if batch_size_fn is not None and not callable(batch_size_fn):
            raise ConfigurationError(
                f"EnergyMonitor(batch_size_fn={batch_size_fn!r}): expected None or a callable "
                "batch -> number of samples, e.g. batch_size_fn=lambda b: len(b['ids'])"
            )
        self._options = CallbackOptions(advice, coefficients, hardware, print_summary)
        self._step: Any = None  # the first training step's StepRecorder, until the sizing check
        self.tracker = EnergyTracker(config=CallbackOptions.tracker_config(
            meters=meters, min_window_s=min_window_s, summary_path=summary_path,
            idle_baseline_s=idle_baseline_s, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
            country_iso_code=country_iso_code, run_name=run_name, log_every_n_steps=log_every_n_steps))
        self._batch_size_fn = batch_size_fn
        self._prog_bar = prog_bar

    # stages ------------------------------------------------------------------------------------
    def _begin(self, trainer: Any, pl_module: Any, stage: str) -> None:
        root = getattr(trainer.strategy, "root_device", None)
        world = int(getattr(trainer, "world_size", 1) or 1)
        context = RunContext.for_process(
            global_rank=int(getattr(trainer, "global_rank", 0) or 0),
            local_rank=int(getattr(trainer, "local_rank", 0) or 0), world_size=world,
            cuda_device=(getattr(root, "index", None) or 0)
            if getattr(root, "type", None) == "cuda" else None,
            log_dir=trainer.log_dir if trainer.loggers else None,  # the same on every rank
        )
        metadata = {
            "framework": self._package,
            "framework_version": getattr(sys.modules.get(self._package.split(".")[0]),
                                         "__version__", None),
            "stage": stage, "world_size": world, "global_rank": context.global_rank,
            "model": type(pl_module).__name__, "precision": str(getattr(trainer, "precision", "")),
        }
        _distributed.begin_stage(self.tracker, stage, metadata, context, world)
        if context.global_rank == 0 and trainer.loggers:
            self.tracker.guard("writing the TensorBoard text entry", self._write_note, trainer)

    def _write_note(self, trainer: Any) -> None:
        """Say once per run, in every TensorBoard logger's Text tab, how the joules are obtained."""
        import importlib

        from wattwise.console import measurement_label

        summary = self.tracker.summary()
        if len(summary.get("stages") or ()) != 1:  # not the run's first stage: said already
            return
        tensorboard = importlib.import_module(f"{self._package}.loggers").TensorBoardLogger
        for logger in trainer.loggers:
            if isinstance(logger, tensorboard):
                logger.experiment.add_text(MEASUREMENT_TEXT_TAG, measurement_label(summary),
                                           global_step=trainer.global_step)

    def _end(self, status: str, error: BaseException | None = None, *, table: bool = True) -> None:
        step, self._step = self._step, None
        if step is not None:  # armed for a first step that never ended: its hooks come off
            self.tracker.guard("removing the sizing check's hooks", step.stop)
        self.tracker.end_stage(status, error)  # type: ignore[arg-type]
        if table and self._options.print_summary:
            self.tracker.print_table()

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._end("completed", table=stage == "fit")

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._end(ended_status(exception), exception)

    def state_dict(self) -> dict[str, Any]:
        state = self.tracker.state_dict()
        return {"tracker": state} if state else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("tracker"):
            self.tracker.load_state_dict(state_dict["tracker"])

    # publishing ---------------------------------------------------------------------------------
    def _publish(self, trainer: Any, pl_module: Any, rec: PhaseRecord | None) -> None:
        if trainer.world_size > 1 or rec is not None:  # a collective under DDP: every rank
            self.tracker.guard("logging the energy metrics", self._log_record, trainer,
                               pl_module, rec)

    def _log_record(self, trainer: Any, pl_module: Any, rec: PhaseRecord | None) -> None:
        """Publish a phase record (summed over ranks) where ``pl_module.log(..., on_epoch=True)``
        would: ``trainer.callback_metrics``, ``trainer.logged_metrics``, (with ``prog_bar``)
        ``trainer.progress_bar_metrics`` and every logger with ``epoch`` at the step Lightning
        logs its epoch-end metrics at. Written directly because the values are final and summed
        over ranks (Lightning's per-key result bookkeeping costs ~0.3 ms a key)."""
        projected = self.tracker.projected_run_joules if rec is not None and \
            rec.phase == "train" and _fn(trainer) == "fit" else None
        rec, projected = _distributed.reduce_phase(  # under DDP a collective: every rank
            rec, bool(self.tracker.meters), projected, trainer.world_size)
        if rec is None:
            return
        metrics = metric_keys(rec, "lightning")
        if not metrics:
            return
        if projected is not None:
            metrics[PROJECTED_KEY] = projected
        if _fn(trainer) != "fit":  # validate/test: pl_module.log puts them in the results
            ddp = trainer.world_size > 1
            bar = progress_bar_metrics(metrics) if self._prog_bar else {}
            for key, value in metrics.items():  # identical on every rank
                pl_module.log(key, value, on_step=False, on_epoch=True, sync_dist=ddp,
                              reduce_fx="max" if ddp else "mean", batch_size=1,
                              prog_bar=key in bar)
            return
        import torch

        tensors = {k: torch.scalar_tensor(v) for k, v in metrics.items()}
        trainer.callback_metrics.update(tensors)
        trainer.logged_metrics.update(tensors)
        if self._prog_bar:
            trainer.progress_bar_metrics.update(progress_bar_metrics(metrics))
        # the step Lightning logs its own epoch-end metrics at, so the curves line up
        loop = getattr(getattr(trainer, "fit_loop", None), "epoch_loop", None)
        step = int(getattr(loop, "_batches_that_stepped", trainer.global_step))
        self._to_loggers(trainer, metrics, max(step - 1, 0) if rec.phase == "train" else step)

    def _log_step(self, trainer: Any, rec: StepRecord) -> None:
        self._to_loggers(trainer, metric_keys(rec, "lightning"), trainer.global_step)

    @staticmethod
    def _to_loggers(trainer: Any, metrics: dict[str, float], step: int) -> None:
        """Every logger gets the metrics with ``epoch`` (as Lightning's own ``log_metrics``
        adds it) and its ``group_separator`` (as ``DeviceStatsMonitor`` honours it); rank 0."""
        if not metrics or trainer.global_rank != 0:
            return
        for logger in trainer.loggers:
            logged = grouped(metrics, getattr(logger, "group_separator", "/"))
            logged["epoch"] = trainer.current_epoch
            if not _tensorboard_event(logger, logged, step):
                logger.log_metrics(logged, step=step)

    def _train_plan(self, trainer: Any) -> Any:
        """The training loader's :class:`~wattwise.samples.LoaderPlan` when its batches are
        predictable (then no batch is looked at to count samples), else None."""
        if self._batch_size_fn is not None:
            return None
        from wattwise.samples import torch_loader_plan

        return torch_loader_plan(getattr(trainer, "train_dataloader", None))

    def _plan(self, trainer: Any) -> None:
        """The planned fit for the forecast: ``max_epochs`` (unknown with ``max_steps``) x the
        samples an epoch trains on (all ranks; ``limit_train_batches`` applied)."""
        epochs = trainer.max_epochs if (trainer.max_epochs or 0) > 0 and trainer.max_steps == -1 \
            else None
        samples = epoch_samples(getattr(trainer, "train_dataloader", None),
                                trainer.num_training_batches, trainer.world_size or 1)
        self.tracker.plan_run(epochs, samples,
                              announce=self._options.print_summary and trainer.global_rank == 0)

    def _check_sizing(self, pl_module: Any, batch: Any) -> Any:
        if self.tracker.global_rank != 0:
            return None
        from wattwise.introspect import deferred_torch_advice
        from wattwise.samples import count_samples

        trainer = pl_module.trainer
        n_samples = epoch_samples(getattr(trainer, "train_dataloader", None),
                                  trainer.num_training_batches, trainer.world_size or 1)
        o = self._options
        step, self._step = self._step, None
        if step is not None:
            step.stop()
        return deferred_torch_advice(  # the model runs off the training thread
            self.tracker, pl_module, batch,
            batch_size=count_samples(batch, self._batch_size_fn) or 1, n_samples=n_samples,
            hardware=o.hardware, coefficients=o.coefficients, step=step)

    # fit ------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        if self._options.advice:  # the sizing check's code, imported before the first batch
            from wattwise._lifecycle import prefetch

            prefetch("wattwise.introspect")
        self._begin(trainer, pl_module, "fit")

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.tracker.guard("planning the forecast", self._plan, trainer)
        # a mid-epoch checkpoint: Lightning resumes inside the epoch without on_train_epoch_start
        if self.tracker.resume_epoch == trainer.current_epoch:
            self.tracker.start_window("train", trainer.current_epoch, self._train_plan(trainer))
            self._record_first_step(pl_module)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.tracker.current_phase != "train":
            self.tracker.start_window("train", trainer.current_epoch, self._train_plan(trainer))
            self._record_first_step(pl_module)

    def _record_first_step(self, pl_module: Any) -> None:
        """The sizing check's fallback, armed before the epoch's first step (not in a per-batch
        hook): the working sets of that step, for a module without a usable forward() (hooks
        removed in _check_sizing, right after the step)."""
        if self._step is None and self._options.advice and self.tracker.advice_pending \
                and self.tracker.global_rank == 0:
            from wattwise.introspect import start_step_recorder

            self._step = start_step_recorder(pl_module)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = self.tracker.count_batch(batch, self._batch_size_fn)  # no meter read, no clock
        if step is not None:
            self.tracker.guard("logging step-level energy", self._log_step, trainer, step)
        if (batch_idx == 0 or self._step is not None) and self._options.advice \
                and self.tracker.advice_pending:  # the first step of the fit (or of a resume)
            self.tracker.check_advice(self._check_sizing, pl_module, batch)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        epoch = self.tracker.end_epoch()
        self._publish(trainer, pl_module, epoch.phases.get("train") if epoch else None)

    # validation, test, predict ---------------------------------------------------------------
    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if _fn(trainer) == "validate":
            self._begin(trainer, pl_module, "validate")

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self.tracker.start_window("validate", trainer.current_epoch)

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self.tracker.count_batch(batch, self._batch_size_fn)

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        self._publish(trainer, pl_module, self.tracker.end_window())
        if _fn(trainer) == "validate":
            self.tracker.end_epoch()

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin(trainer, pl_module, "test")

    def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.tracker.start_window("test", trainer.current_epoch)

    def on_test_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        self.tracker.count_batch(batch, self._batch_size_fn)

    def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self._publish(trainer, pl_module, self.tracker.end_window())
        self.tracker.end_epoch()

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._begin(trainer, pl_module, "predict")

    def on_predict_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.tracker.start_window("predict", trainer.current_epoch)

    on_predict_batch_end = on_test_batch_end

    def on_predict_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.tracker.end_epoch()  # no logging in predict hooks: the summary has the numbers


# ------------------------------------------------------------------------------------------------
# per-package classes, built lazily (one per Lightning package, same name and state_key)

_BUILT: dict[str, type] = {}


def _build(package: str, module_name: str) -> type:
    if package not in _BUILT:
        import importlib

        try:
            base = importlib.import_module(package).Callback
        except ImportError as e:
            pip = "lightning" if package == "lightning.pytorch" else "pytorch-lightning"
            raise ImportError(f"wattwise EnergyMonitor for {package!r} needs that package: "
                              f"pip install {pip}") from e
        _BUILT[package] = type("EnergyMonitor", (_EnergyMonitorImpl, base), {
            "__module__": module_name, "__qualname__": "EnergyMonitor", "__doc__": _DOC,
            "_package": package})
    return _BUILT[package]


def _lazy(module_name: str, package: str | None) -> Any:
    def getattr_(name: str) -> Any:
        if name != "EnergyMonitor":
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        import importlib.util

        default = "lightning.pytorch" if importlib.util.find_spec("lightning") else "pytorch_lightning"
        return _build(package or default, module_name)

    return getattr_


__getattr__ = _lazy(__name__, None)
#: ``wattwise.lightning.pl``: the same callback for the standalone ``pytorch_lightning`` package.
pl = types.ModuleType(f"{__name__}.pl", "EnergyMonitor for the standalone pytorch_lightning package.")
pl.__getattr__ = _lazy(pl.__name__, "pytorch_lightning")  # type: ignore[method-assign]
pl.__all__ = ["EnergyMonitor"]  # type: ignore[attr-defined]
sys.modules.setdefault(pl.__name__, pl)
