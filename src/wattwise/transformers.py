"""Hugging Face adapter: the :class:`EnergyMonitor` ``TrainerCallback`` for ``transformers.Trainer``.

One line gives joules per sample, per epoch and per evaluation in ``trainer.state.log_history``
and every ``report_to`` integration::

    from wattwise.transformers import EnergyMonitor
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[EnergyMonitor()])

This module imports ``transformers`` (the callback subclasses ``TrainerCallback``);
``import wattwise`` does not. The callback holds no run state: every hook is a call on one
:class:`~wattwise.tracker.EnergyTracker`; the samples of each step come from
:class:`wattwise.hf_data.BatchPlan` and the keys from :func:`wattwise.hf_data.trainer_metric_keys`.
"""

from __future__ import annotations

import logging
import math
import sys
import weakref
from collections.abc import Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import TYPE_CHECKING, Any

import transformers
from transformers import TrainerCallback

from wattwise import _distributed
from wattwise._lifecycle import ended_status
from wattwise._warn import warn
from wattwise.config import CallbackOptions, RunContext
from wattwise.errors import WattwiseWarning
from wattwise.forecast import PROJECTED_KEY_KERAS
from wattwise.hf_data import BatchPlan, trainer_metric_keys
from wattwise.meters.base import Meter
from wattwise.records import PhaseRecord
from wattwise.tracker import EnergyTracker

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["EnergyMonitor"]

log = logging.getLogger("wattwise")


def _epoch(state: Any, *, begin: bool = False) -> int:
    """The epoch being trained. ``state.epoch`` is the epoch number at ``on_epoch_begin``,
    ``epoch + (step + 1) / steps_in_epoch`` after a step (``epoch + 1`` after the last)."""
    e = float(state.epoch or 0.0)
    return max(0, math.floor(e + 1e-6) if begin else math.ceil(e - 1e-6) - 1)


def _prefix(metrics: Mapping[str, Any] | None, default: str) -> str:
    """transformers' ``metric_key_prefix`` of an evaluation's metrics (``eval_runtime`` ->
    ``"eval"``, ``eval_data1_runtime`` -> ``"eval_data1"``)."""
    for key in metrics or ():
        if key.endswith("_runtime"):
            return key[: -len("_runtime")]
    return default


def _plan(loader: Any, batch_size: int, args: Any) -> BatchPlan:
    """The batches of one pass over ``loader`` (see :class:`~wattwise.hf_data.BatchPlan`)."""
    def length(obj: Any) -> int | None:
        try:
            return int(len(obj))
        except Exception:  # noqa: BLE001 - an IterableDataset: no length
            return None

    return BatchPlan.of(
        batch_size, n_batches=length(loader), dataset_len=length(getattr(loader, "dataset", None)),
        world_size=int(getattr(args, "world_size", 1) or 1),
        drop_last=bool(getattr(args, "dataloader_drop_last", False)))


class EnergyMonitor(TrainerCallback):  # type: ignore[misc]
    """Measure the energy of ``Trainer`` training and evaluation; log it as the Trainer logs.

    Joules come from hardware counters (NVML for GPUs, RAPL for CPUs) read at window
    boundaries only: epoch start and end, and the start and end of every evaluation. Nothing
    is read per step.

    **Keys** (logged with ``Trainer.log``, so they land in ``trainer.state.log_history`` and
    every ``report_to`` integration - TensorBoard shows ``train/energy_joules``, ...):

    * at the end of every training epoch: ``energy_joules`` (the epoch's training steps,
      evaluation excluded), ``energy_joules_per_sample``, ``energy_watts`` (joules / wall
      seconds), ``energy_active_joules`` (with an idle baseline), ``energy_co2_g`` (with a
      carbon intensity), ``energy_joules_<domain>`` per domain (``energy_joules_gpu_0``,
      ``energy_joules_cpu_package-0``) and ``energy_estimated`` (1.0 when the joules are an
      estimate because no hardware counter is readable, else 0.0);
    * after every evaluation (inside ``train()`` or ``trainer.evaluate()``): the same with
      the evaluation's prefix, ``eval_energy_joules``, ... (``eval_<name>_energy_...`` for a
      dict of eval datasets), also added to the metrics ``evaluate()`` returns, so
      ``metric_for_best_model="eval_energy_joules"`` works.

    Unknown values are left out, never logged as 0.

    **Samples.** transformers hands callbacks no batch: each optimizer step counts
    ``gradient_accumulation_steps`` batches of ``per_device_train_batch_size`` samples (the
    samples this process trained on), each evaluation batch ``per_device_eval_batch_size``;
    the last batch of a pass is counted exactly when the data loader's dataset has a length
    and one process trains, else as full (an ``IterableDataset``; under DDP ``accelerate``
    pads the shards to full batches). Under DDP the records of all ranks are summed (one
    ``all_gather``) before logging, so J/sample is over the samples of every process.

    **Runs.** ``train()`` is a ``fit`` stage; a standalone ``evaluate()`` (or ``predict()``)
    is a ``validate`` stage of the same run, measured from the end of its first batch
    (transformers has no hook before an evaluation starts: that batch is in neither joules
    nor samples). A second ``train()`` is a new run (``<stem>.run2<suffix>``). A ``train()``
    that raises is recorded as ``"failed"`` when the exception ends the script; in a notebook
    use ``with monitor: trainer.train()`` or call :meth:`finish`. Meters you pass stay open.
    **DDP / accelerate**: node-wide meters are read on the local main process only; rank N
    writes ``<stem>.rankN<suffix>``.

    Args:
        meters: ``"auto"``, meter names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
            ``"codecarbon"``) or :class:`~wattwise.meters.Meter` instances.
        summary_path: the run summary JSON; ``"auto"`` (default) = ``wattwise_summary.json``
            in ``args.output_dir``; None = none.
        idle_baseline_s: seconds of idle power measured at train start (default 0.0 = off).
        advice: the cache-aware sizing check at train start, on the model and one batch
            built from the training dataset (no batch is drawn from the loader), with one
            :class:`~wattwise.errors.SizingWarning` when the working set is far from a cache
            boundary (default True).
        coefficients: energy-model coefficients for the sizing check (None = bundled).
        hardware: hardware description for the sizing check (default ``"auto"``).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for ``co2_g`` figures (default None).
        country_iso_code: ISO 3166 alpha-3 code for codecarbon's offline carbon intensity.
        print_summary: print the run table at the end of ``train()`` (default True).
        run_name: a name for the run summary (default None).

    Raises:
        ConfigurationError: on a bad argument, at construction.
        MeterUnavailableError: at train start (before any step) when a meter asked for by
            name cannot open.

    Example:
        >>> from wattwise.transformers import EnergyMonitor
        >>> from wattwise.testing import FakeMeter
        >>> monitor = EnergyMonitor(meters=[FakeMeter(("cpu:package-0",))], print_summary=False)
        >>> type(monitor).__name__
        'EnergyMonitor'
    """

    def __init__(
        self,
        meters: str | Sequence[str | Meter] = "auto",
        *,
        summary_path: str | PathLike[str] | None = "auto",
        idle_baseline_s: float = 0.0,
        advice: bool = True,
        coefficients: Any = None,
        hardware: Any = "auto",
        carbon_intensity_g_per_kwh: float | None = None,
        country_iso_code: str | None = None,
        print_summary: bool = True,
        run_name: str | None = None,
    ) -> None:
        super().__init__()
        self._options = CallbackOptions(advice, coefficients, hardware, print_summary)
        self.tracker = EnergyTracker(config=CallbackOptions.tracker_config(
            meters=meters, summary_path=summary_path, idle_baseline_s=idle_baseline_s,
            carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
            country_iso_code=country_iso_code, run_name=run_name))
        # what the Trainer's data loaders say about their batches, and the batches seen of
        # the current pass (transformers' knowledge, not the tracker's)
        self._train_plan: BatchPlan | None = None
        self._eval_plan: BatchPlan | None = None
        self._train_batch = 0
        self._eval_batch = 0
        self._trainer: weakref.ref[Any] | None = None
        self._warned_no_trainer = False

    @property
    def summary(self) -> dict[str, Any] | None:
        """The run summary so far (final once the run ended), or None before the first run."""
        return None if self.tracker.status == "created" else self.tracker.summary()

    # stages ---------------------------------------------------------------------------------
    def _begin(self, args: Any, stage: str, model: Any) -> None:
        device = getattr(args, "device", None)
        world = int(getattr(args, "world_size", 1) or 1)
        context = RunContext.for_process(
            global_rank=int(getattr(args, "process_index", 0) or 0),
            local_rank=int(getattr(args, "local_process_index", 0) or 0), world_size=world,
            cuda_device=(getattr(device, "index", None) or 0)
            if getattr(device, "type", None) == "cuda" else None,
            log_dir=getattr(args, "output_dir", None))
        metadata = {
            "framework": "transformers", "framework_version": transformers.__version__,
            "stage": stage, "world_size": world, "global_rank": context.global_rank,
            "model": type(model).__name__ if model is not None else None,
            "per_device_train_batch_size": getattr(args, "per_device_train_batch_size", None),
            "gradient_accumulation_steps": getattr(args, "gradient_accumulation_steps", None),
        }
        _distributed.begin_stage(self.tracker, stage, metadata, context, world)

    def _end(self, status: str, error: BaseException | None = None, *, table: bool) -> None:
        self.tracker.end_stage(status, error)  # type: ignore[arg-type]
        if table and self._options.print_summary:
            self.tracker.print_table()

    def finish(self, status: str = "completed", error: BaseException | None = None
               ) -> dict[str, Any] | None:
        """End the running stage and the run, write the final summary and return it
        (idempotent); for a ``train()`` interrupted in a session that goes on (a notebook)."""
        self._end(status, error, table=False)
        return self.tracker.finish(status, error)  # type: ignore[arg-type]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and self.tracker.stage is not None:
            self._end(ended_status(exc), exc, table=True)

    # the tracker's open window (the only tracker state the hooks ask about) -----------------
    def _phase(self) -> str | None:
        return self.tracker.current_phase

    def _window_epoch(self) -> int | None:
        return self.tracker.current_epoch

    # publishing -------------------------------------------------------------------------------
    def _find_trainer(self) -> Any:
        """The ``Trainer`` calling this hook: transformers gives callbacks no handle on it, so
        it is looked up once on the call stack - the caller whose callback list holds this
        monitor (``Trainer.log`` is how a value reaches ``log_history`` and the integrations)."""
        trainer = None if self._trainer is None else self._trainer()
        frame = sys._getframe(1)
        depth = 0
        while trainer is None and frame is not None and depth < 24:
            obj = frame.f_locals.get("self")
            handler = getattr(obj, "callback_handler", None)
            if any(cb is self for cb in getattr(handler, "callbacks", ())) and callable(
                    getattr(obj, "log", None)):
                trainer = obj
                self._trainer = weakref.ref(obj)
            frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
        return trainer

    def _publish(self, args: Any, state: Any, rec: PhaseRecord | None, prefix: str,
                 metrics: dict[str, Any] | None = None, log: bool = True) -> None:
        """Log one record (summed over ranks under DDP) with ``Trainer.log`` (unless ``log`` is
        False); with ``metrics`` (an evaluation's), also add the keys to them."""
        projected = self.tracker.projected_run_joules if prefix == "" else None
        rec, projected = _distributed.reduce_phase(  # under DDP a collective: every rank
            rec, bool(self.tracker.meters), projected, int(getattr(args, "world_size", 1) or 1))
        if rec is None:
            return
        values = trainer_metric_keys(rec, prefix)
        if projected is not None and values:
            values[PROJECTED_KEY_KERAS] = projected
        if metrics is not None:
            metrics.update(values)
        if not log:  # predict(): transformers logs nothing itself; the metrics have them
            return
        trainer = self._find_trainer()
        if trainer is not None:
            control = getattr(trainer, "control", None)
            should_log = getattr(control, "should_log", False)
            trainer.log(dict(values))
            if control is not None:  # on_log cleared it: the Trainer's own log is still due
                control.should_log = should_log
            return
        if not self._warned_no_trainer:
            self._warned_no_trainer = True
            warn("EnergyMonitor: the Trainer calling it was not found on the call stack, so the "
                 "energy keys go into state.log_history only, not to the report_to "
                 "integrations", WattwiseWarning)
        state.log_history.append({**values, "epoch": state.epoch, "step": state.global_step})

    def _finish_epoch(self, args: Any, state: Any) -> None:
        rec = self.tracker.end_epoch()
        train = rec.phases.get("train") if rec is not None else None
        self.tracker.guard("logging the energy metrics", self._publish, args, state, train, "")

    # training ---------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                       train_dataloader: Any = None, **kwargs: Any) -> None:
        self._begin(args, "fit", model)
        self.tracker.guard("reading the Trainer's setup", self._setup_fit, args, state, model,
                           train_dataloader)

    def _setup_fit(self, args: Any, state: Any, model: Any, loader: Any) -> None:
        self._find_trainer()
        batch_size = int(getattr(state, "train_batch_size", None) or args.per_device_train_batch_size)
        self._train_plan = _plan(loader, batch_size, args)
        epochs = getattr(args, "num_train_epochs", None)
        epochs = int(epochs) if (getattr(args, "max_steps", -1) or -1) <= 0 and isinstance(
            epochs, (int, float)) and float(epochs).is_integer() else None
        plan = self._train_plan
        samples = None if plan is None or plan.n_samples is None else \
            plan.n_samples * int(getattr(args, "world_size", 1) or 1)
        self.tracker.plan_run(epochs, samples,
                              self._options.print_summary and self.tracker.global_rank == 0)
        if self._options.advice and self.tracker.global_rank == 0:
            self.tracker.check_advice(self._check_sizing, model, loader, batch_size)
        if getattr(args, "eval_on_start", False):  # an evaluation follows at once
            self._start_eval(args, state, 0)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        epoch = _epoch(state, begin=True)
        if self._phase() is not None and self._window_epoch() != epoch:
            self._finish_epoch(args, state)  # the window reopened after the last epoch's eval
        self._train_batch = 0
        if self._phase() != "train":  # (after eval_on_start, the window is already open)
            self.tracker.start_window("train", epoch)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._phase() == "train":
            plan = self._train_plan
            accumulation = int(getattr(args, "gradient_accumulation_steps", 1) or 1)
            if plan is None:
                self.tracker.add_batch(None, accumulation)
            else:
                samples, batches = plan.take(self._train_batch, accumulation)
                self._train_batch += batches
                self.tracker.add_batch(samples, batches)
        if control.should_evaluate:  # set by DefaultFlowCallback, which runs before us
            self._start_eval(args, state, 0)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._phase() == "train":
            self.tracker.end_window()
        if control.should_evaluate:  # the epoch's evaluation follows: it is part of the epoch
            self._start_eval(args, state, 0)
        elif self.tracker.stage == "fit":
            self._finish_epoch(args, state)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._phase() is not None:
            self._finish_epoch(args, state)
        self._end("completed", table=True)

    # evaluation --------------------------------------------------------------------------------
    def _start_eval(self, args: Any, state: Any, first_batch: int) -> None:
        """Open an evaluation window; ``first_batch`` batches already ran unmeasured."""
        if self._phase() == "train":
            self.tracker.end_window()
        self._eval_plan, self._eval_batch = None, first_batch
        self.tracker.start_window("validate", _epoch(state) if self.tracker.stage == "fit" else 0)

    def on_prediction_step(self, args: Any, state: Any, control: Any, eval_dataloader: Any = None,
                           **kwargs: Any) -> None:
        if self._phase() != "validate":
            if self.tracker.stage is None:  # a standalone evaluate()/predict(): its first hook
                self._begin(args, "validate", kwargs.get("model"))
            self._start_eval(args, state, 1)  # the first batch ran before any hook
            return
        plan = self._eval_plan
        if plan is None:
            plan = self._eval_plan = self.tracker.guard(
                "reading the evaluation data loader", _plan, eval_dataloader,
                int(args.eval_batch_size), args)
        self.tracker.add_batch(None if plan is None else plan.samples(self._eval_batch))
        self._eval_batch += 1

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> None:
        self._end_eval(args, state, metrics, "eval")

    def on_predict(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                   **kwargs: Any) -> None:
        self._end_eval(args, state, metrics, "test", log=False)

    def _end_eval(self, args: Any, state: Any, metrics: dict[str, Any] | None, default: str,
                  *, log: bool = True) -> None:
        if self._phase() != "validate":
            return
        rec = self.tracker.end_window()
        self.tracker.guard("logging the energy metrics", self._publish, args, state, rec,
                           _prefix(metrics, default), metrics, log)
        if self.tracker.stage == "fit":  # training goes on: its window reopens
            self.tracker.start_window("train", _epoch(state))
        else:
            self.tracker.end_epoch()
            self._end("completed", table=False)

    # sizing -------------------------------------------------------------------------------------
    def _check_sizing(self, model: Any, loader: Any, batch_size: int) -> Any:
        """The sizing check on the model and one batch collated from the first samples of the
        training dataset (the loader is not iterated: no random state is consumed). Returns the
        :class:`~wattwise.run.Deferred` whose model part runs off the training thread."""
        from wattwise.introspect import deferred_torch_advice

        dataset = loader.dataset
        n_samples = int(len(dataset))
        batch = loader.collate_fn([dataset[i] for i in range(min(batch_size, n_samples))])
        device = next(model.parameters()).device
        if isinstance(batch, Mapping):
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
        o = self._options
        return deferred_torch_advice(self.tracker, model, batch, batch_size=batch_size,
                                     n_samples=n_samples, hardware=o.hardware,
                                     coefficients=o.coefficients)
