"""Keras 3 adapter: the drop-in :class:`EnergyMonitor` callback.

One line gives joules per sample and per epoch in ``History``, ``CSVLogger`` and TensorBoard::

    from wattwise.keras import EnergyMonitor
    model.fit(x, y, validation_split=0.2, callbacks=[EnergyMonitor()])

This module imports ``keras`` (the callback subclasses ``keras.callbacks.Callback``);
``import wattwise`` does not. The callback holds no run state: every hook is a call on one
:class:`~wattwise.tracker.EnergyTracker` (windows, epochs, stages, clocks, the failure guard),
and samples are counted by :class:`wattwise.keras_data.SampleCounter`, which explains how.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import keras

from wattwise._lifecycle import ended_status
from wattwise._warn import warn
from wattwise.config import CallbackOptions, RunContext
from wattwise.errors import ConfigurationError, WattwiseWarning
from wattwise.forecast import PROJECTED_KEY_KERAS
from wattwise.keras_data import SampleCounter, ranks, zeros_batch
from wattwise.meters.base import Meter
from wattwise.records import MEASUREMENT_TEXT_TAG, metric_keys
from wattwise.tracker import EnergyTracker

if TYPE_CHECKING:
    from typing_extensions import Self

    from wattwise.tbwriter import EventFileWriter

__all__ = ["EnergyMonitor"]

log = logging.getLogger("wattwise")


def _positive_int_or_none(name: str, value: object) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"EnergyMonitor({name}={value!r}): expected None (let Keras "
                                 "tell) or an int >= 1")


class EnergyMonitor(keras.callbacks.Callback):  # type: ignore[misc]
    """Measure the energy of Keras training and validation; write it into the epoch ``logs``.

    Joules come from hardware counters (NVML for GPUs, RAPL for CPUs) read at window
    boundaries only (train start and end of every epoch, validation start and end); batch
    hooks are not even defined unless ``log_every_n_steps`` is set, so Keras keeps its
    asynchronous callback dispatch.

    **Keys written into the epoch logs** (list ``EnergyMonitor`` *before* ``CSVLogger``,
    ``keras.callbacks.TensorBoard`` and other callbacks that read ``logs``):

    * ``energy_joules`` (the epoch's training steps, validation excluded),
      ``energy_joules_per_sample``, ``energy_watts`` (joules / wall seconds),
      ``energy_active_joules`` (with an idle baseline), ``energy_co2_g`` (with a carbon
      intensity), ``energy_joules_<domain>`` per domain, non-alphanumerics as ``_``
      (``energy_joules_gpu_0``, ``energy_joules_cpu_package_0``);
    * ``val_energy_joules``, ``val_energy_joules_per_sample``, ... for the validation inside
      ``fit`` (Keras's ``val_`` convention);
    * ``energy_estimated``: 1.0 when the joules are estimates (no hardware counter readable),
      0.0 when measured. The keys are the same on every machine, so
      ``EarlyStopping(monitor="energy_joules_per_sample", mode="min")`` works everywhere;
    * step-level (``log_every_n_steps``): ``energy_step_joules``,
      ``energy_step_joules_per_sample``, ``energy_step_watts`` in the batch ``logs``.

    Unknown values are left out, never written as 0. ``log_dir=`` writes the epoch values
    as TensorBoard scalars (no TensorFlow needed) to ``<log_dir>/train`` and
    ``<log_dir>/validation``, tags ``epoch_energy_joules``... like Keras's TensorBoard, and
    once per run a text entry ``wattwise/measurement`` saying MEASURED or ESTIMATED. When a
    ``keras.callbacks.TensorBoard`` listed after the monitor writes the same ``log_dir``, that
    callback writes the energy keys from ``logs`` and the monitor writes no scalar of its own
    there, so every tag is written once.

    **Runs.** Standalone ``evaluate`` / ``predict`` with the monitor are measured as ``test`` /
    ``predict`` stages of the run (summary and ``log_dir``). A second ``fit`` is a new run
    (``<stem>.run2<suffix>``). A run whose training raises is recorded as ``"failed"`` with the
    error (``"interrupted"`` on Ctrl-C) when the exception ends the script; inside a notebook,
    use the monitor as a context manager (``with monitor: model.fit(...)``) or call
    :meth:`finish` yourself. Meters you pass stay open (they are yours). On worker N > 0 of a
    multi-worker run, node-wide meters are skipped and the summary is ``<stem>.rankN<suffix>``.

    Args:
        meters: ``"auto"``, meter names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
            ``"codecarbon"``) or :class:`~wattwise.meters.Meter` instances.
        log_dir: directory for TensorBoard event files written by wattwise (default None).
        log_every_n_steps: step-level energy every this many training batches, at the
            earliest ``min_window_s`` after the previous one; None (default) = off.
        min_window_s: shortest step-level window, in seconds (default 1.0).
        summary_path: the run summary JSON; ``"auto"`` (default) = ``wattwise_summary.json``
            in ``log_dir`` when one is given, else none; None = none.
        idle_baseline_s: seconds of idle power measured at train start (default 0.0 = off).
        advice: the cache-aware sizing check at train start, with one
            :class:`~wattwise.errors.SizingWarning` when the working set is far from a cache
            boundary (default True); it uses the model's input shapes and Keras's batch size.
        coefficients: energy-model coefficients for the sizing check (None = bundled).
        hardware: hardware description for the sizing check (default ``"auto"``).
        batch_size: samples per batch for data whose batch size Keras cannot report
            (generators, ``tf.data`` with a dynamic batch dimension); every batch counts as full.
        samples_per_epoch: training samples per epoch, exact, for such data (default None).
        validation_samples: validation samples per validation run, for such data.
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for ``co2_g`` figures (default None).
        country_iso_code: ISO 3166 alpha-3 code for codecarbon's offline carbon intensity.
        print_summary: print the run table at the end of ``fit`` (default True).
        run_name: a name for the run summary (default None).

    Raises:
        ConfigurationError: on a bad argument (at construction), or at ``on_train_begin``
            when the training samples per batch can be found neither from Keras nor from
            ``batch_size`` / ``samples_per_epoch``.
        MeterUnavailableError: at ``on_train_begin`` (before any step) when a meter asked
            for by name cannot open.

    Example:
        >>> from wattwise.keras import EnergyMonitor
        >>> from wattwise.testing import FakeMeter
        >>> monitor = EnergyMonitor(meters=[FakeMeter(("cpu:package-0",))], print_summary=False)
        >>> type(monitor).__name__
        'EnergyMonitor'
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Keras turns async dispatch off for a callback that overrides on_train_batch_end, so
        # only a step-level monitor is of the subclass that does
        klass: type[EnergyMonitor] = cls
        if cls is EnergyMonitor and kwargs.get("log_every_n_steps") is not None:
            klass = _StepEnergyMonitor
        return super().__new__(klass)  # type: ignore[no-any-return]

    def __init__(
        self,
        meters: str | Sequence[str | Meter] = "auto",
        *,
        log_dir: str | PathLike[str] | None = None,
        log_every_n_steps: int | None = None,
        min_window_s: float = 1.0,
        summary_path: str | PathLike[str] | None = "auto",
        idle_baseline_s: float = 0.0,
        advice: bool = True,
        coefficients: Any = None,
        hardware: Any = "auto",
        batch_size: int | None = None,
        samples_per_epoch: int | None = None,
        validation_samples: int | None = None,
        carbon_intensity_g_per_kwh: float | None = None,
        country_iso_code: str | None = None,
        print_summary: bool = True,
        run_name: str | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("batch_size", batch_size), ("samples_per_epoch", samples_per_epoch),
                            ("validation_samples", validation_samples)):
            _positive_int_or_none(name, value)
        self._options = CallbackOptions(advice, coefficients, hardware, print_summary)
        if log_dir is not None and (not isinstance(log_dir, (str, PathLike)) or not str(log_dir)):
            raise ConfigurationError(f"EnergyMonitor(log_dir={log_dir!r}): expected None or a "
                                     "directory path such as 'logs/run1'")
        if summary_path == "auto":  # a documented location or none, never the cwd silently
            summary_path = None if log_dir is None else Path(log_dir) / "wattwise_summary.json"
        self.tracker = EnergyTracker(config=CallbackOptions.tracker_config(
            meters=meters, min_window_s=min_window_s, summary_path=summary_path,
            idle_baseline_s=idle_baseline_s, carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
            country_iso_code=country_iso_code, run_name=run_name, log_every_n_steps=log_every_n_steps))
        self._samples = SampleCounter(batch_size, samples_per_epoch, validation_samples)
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._writers: dict[str, EventFileWriter] = {}
        # what a keras.callbacks.TensorBoard after this one writes into log_dir from the logs:
        # nothing, the epoch keys ("epoch"), or the batch keys too ("batch"); set per fit
        self._keras_tensorboard: str | None = None

    @property
    def summary(self) -> dict[str, Any] | None:
        """The run summary so far (final once the run ended), or None before the first run."""
        return None if self.tracker.status == "created" else self.tracker.summary()

    # stages ---------------------------------------------------------------------------------
    def _begin(self, stage: str) -> None:
        global_rank, local_rank = ranks()
        self.tracker.begin_stage(stage, context=RunContext(global_rank, local_rank), metadata={
            "framework": "keras", "framework_version": getattr(keras, "__version__", None),
            "keras_backend": keras.backend.backend(), "stage": stage, "global_rank": global_rank,
            "model": type(self.model).__name__ if self.model is not None else None,
        })
        if self._log_dir is not None and global_rank == 0:
            self.tracker.guard("writing the TensorBoard text entry", self._write_note, stage)

    def _write_note(self, stage: str) -> None:
        """Say once per run, as a TensorBoard text entry, how the joules are obtained."""
        from wattwise.console import measurement_label

        summary = self.tracker.summary()
        if len(summary.get("stages") or ()) == 1:  # the run's first stage
            self._writer("train" if stage == "fit" else stage).add_text(
                MEASUREMENT_TEXT_TAG, measurement_label(summary))

    def _end(self, status: str, error: BaseException | None = None, *, table: bool) -> None:
        self.tracker.end_stage(status, error)  # type: ignore[arg-type]
        for w in self._writers.values():
            try:
                w.close()
            except Exception as e:  # noqa: BLE001 - logging never kills training
                log.debug("EnergyMonitor: closing an event file failed: %r", e)
        self._writers = {}
        if table and self._options.print_summary:
            self.tracker.print_table()

    def finish(self, status: str = "completed", error: BaseException | None = None
               ) -> dict[str, Any] | None:
        """End the running stage and the run, write the final summary and return it
        (idempotent); for a ``fit`` interrupted in a session that goes on (a notebook)."""
        self._end(status, error, table=False)
        return self.tracker.finish(status, error)  # type: ignore[arg-type]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is not None and self.tracker.stage is not None:
            self._end(ended_status(exc), exc, table=True)

    def _add(self, sizes: list[int] | None) -> None:
        if sizes is None:  # the batches' samples are unknown: so is J/sample
            self.tracker.add_batch(None, 0)
        elif sizes:
            self.tracker.add_batch(sum(sizes), len(sizes))

    # fit --------------------------------------------------------------------------------------
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self._samples.begin_fit(self.model)  # raises, naming the options, before any step
        self._keras_tensorboard = _keras_tensorboard_after(self, self._log_dir)
        self._begin("fit")
        inputs = self._samples.sizing_inputs()
        self.tracker.guard("planning the forecast", self.tracker.plan_run,
                           (self.params or {}).get("epochs"), inputs[1] if inputs else None,
                           self._options.print_summary and self.tracker.global_rank == 0)
        if self._options.advice and self.tracker.global_rank == 0:
            self.tracker.check_advice(self._check_sizing)

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self._samples.begin_epoch(self.model)
        self.tracker.start_window("train", int(epoch))

    def _end_train_window(self) -> None:
        if self.tracker.current_phase == "train":
            self._add(self._samples.train_batches(self.model, self.params))
            self.tracker.end_window()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._end_train_window()
        rec = self.tracker.end_epoch()
        if rec is None:
            return
        for phase, run in (("train", "train"), ("validate", "validation")):
            if phase in rec.phases:
                values = metric_keys(rec.phases[phase], "keras")
                projected = self.tracker.projected_run_joules
                if phase == "train" and values and projected is not None:
                    values[PROJECTED_KEY_KERAS] = projected
                if logs is not None:
                    logs.update(values)
                if self._keras_tensorboard is None:  # else Keras's TensorBoard writes them
                    self._write_scalars(run, values, int(epoch))

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self._end("completed", table=True)

    # evaluate and predict: validation inside fit, or stages of their own ----------------------
    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.tracker.stage == "fit":
            epoch = self.tracker.current_epoch or 0
            self._end_train_window()  # validation is a phase of its own
            problem = self._samples.begin_eval(self.model, "evaluate", "validate")
            if problem:
                warn(problem + " Validation joules are still reported.", WattwiseWarning)
            self.tracker.start_window("validate", epoch)
        else:
            self._standalone_begin("test", "evaluate")

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.tracker.current_phase == "validate":
            self._add(self._samples.eval_batches())
            self.tracker.end_window()
        elif self.tracker.stage == "test":
            self._standalone_end("test")

    def on_predict_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.tracker.stage != "fit":  # predict() from inside fit (another callback): not ours
            self._standalone_begin("predict", "predict")

    def on_predict_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self.tracker.stage == "predict":
            self._standalone_end("predict")

    def _standalone_begin(self, phase: str, method: str) -> None:
        self._begin(phase)
        problem = self._samples.begin_eval(self.model, method, phase)
        if problem:
            warn(problem, WattwiseWarning)
        self.tracker.start_window(phase, 0)

    def _standalone_end(self, phase: str) -> None:
        self._add(self._samples.eval_batches())
        rec = self.tracker.end_window()
        self.tracker.end_epoch()
        if rec is not None:
            self._write_scalars(phase, metric_keys(rec, "keras"), self.tracker.stage_count(phase) - 1)
        self._end("completed", table=False)

    # TensorBoard (wattwise's own writer), sizing ----------------------------------------------
    def _writer(self, run: str) -> EventFileWriter:
        w = self._writers.get(run)
        if w is None:
            from wattwise.tbwriter import EventFileWriter

            assert self._log_dir is not None
            w = self._writers[run] = EventFileWriter(self._log_dir / run)
        return w

    def _write_scalars(self, run: str, values: Mapping[str, float], step: int,
                       tag_prefix: str = "epoch_") -> None:
        """Write ``values`` as Keras's TensorBoard callback would: ``val_`` keys (prefix
        removed) to ``validation``, the others to ``train`` (or to the standalone run)."""
        if self._log_dir is None or not values or self.tracker.global_rank != 0:
            return
        try:
            w = self._writer(run)
            for key, value in values.items():
                if run == "validation":
                    if not key.startswith("val_"):
                        continue  # the flag goes to train/, where Keras's callback puts it
                    key = key[4:]
                w.add_scalar(tag_prefix + key, value, step)
        except Exception as e:  # noqa: BLE001 - logging never kills training
            warn(f"EnergyMonitor: writing TensorBoard scalars failed ({e!r})", WattwiseWarning)

    def _check_sizing(self) -> Any:
        from wattwise.introspect import deferred_advice, keras_working_sets

        inputs = self._samples.sizing_inputs()
        batch = zeros_batch(self.model, inputs[0]) if inputs else None
        if inputs is None or batch is None:
            raise ConfigurationError("the model has no static input shapes")
        ws = keras_working_sets(  # Keras gives callbacks no batch: zeros of the input shapes
            self.model, batch, batch_size=inputs[0], n_samples=inputs[1])
        return deferred_advice(  # the model runs off the training thread
            self.tracker, ws, n_samples=inputs[1], hardware=self._options.hardware,
            coefficients=self._options.coefficients)


def _keras_tensorboard_after(monitor: EnergyMonitor, log_dir: Path | None) -> str | None:
    """What a ``keras.callbacks.TensorBoard`` listed after ``monitor`` and writing ``log_dir``
    writes from the ``logs`` the monitor fills: ``"epoch"`` (the epoch keys), ``"batch"``
    (batch keys too, ``update_freq`` not ``"epoch"``) or None (no such callback).

    Keras gives a callback no view of the others, so the ``CallbackList`` calling
    ``on_train_begin`` is found on the call stack (a Keras internal, Keras 3.0 to 3.15); if it
    is not found, the monitor writes its own scalars as before.
    """
    if log_dir is None:
        return None
    frame = sys._getframe(1)
    callbacks: list[Any] | None = None
    for _ in range(8):  # CallbackList.on_train_begin is the caller's caller or so
        owner = frame.f_locals.get("self")
        found = getattr(owner, "callbacks", None)
        if isinstance(found, list) and any(c is monitor for c in found):
            callbacks = found
            break
        if frame.f_back is None:
            break
        frame = frame.f_back
    if callbacks is None:
        return None
    after = callbacks[[c is monitor for c in callbacks].index(True) + 1:]
    ours = os.path.realpath(log_dir)
    for c in after:
        if isinstance(c, keras.callbacks.TensorBoard) and os.path.realpath(
                str(getattr(c, "log_dir", ""))) == ours:
            return "epoch" if getattr(c, "update_freq", "epoch") == "epoch" else "batch"
    return None


class _StepEnergyMonitor(EnergyMonitor):
    """An :class:`EnergyMonitor` with step-level logging (``log_every_n_steps`` set): the only
    class that overrides ``on_train_batch_end`` (Keras then dispatches batch hooks
    synchronously, the price of step-level readings)."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if self.tracker.current_phase != "train":
            return
        sizes = self._samples.step_batches(batch)
        rec = self.tracker.add_batch(sum(sizes), len(sizes)) if sizes else None
        if rec is not None:
            metrics = metric_keys(rec, "keras")
            if logs is not None:
                logs.update(metrics)
            if self._keras_tensorboard != "batch":  # else Keras's TensorBoard writes them
                self._write_scalars("train", metrics, rec.step + 1, tag_prefix="batch_")
