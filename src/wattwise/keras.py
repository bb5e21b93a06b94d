"""Keras 3 adapter: the drop-in :class:`EnergyMonitor` callback.

One line gives joules per sample and per epoch in ``History``, ``CSVLogger`` and TensorBoard::

    from wattwise.keras import EnergyMonitor
    model.fit(x, y, validation_split=0.2, callbacks=[EnergyMonitor()])

This module imports ``keras`` at its own import (the callback subclasses
``keras.callbacks.Callback``); ``import wattwise`` does not import it. The arithmetic (windows,
joules per sample, run summaries) lives in :class:`wattwise.tracker.EnergyTracker`; this module
maps Keras hooks to tracker calls, works out how many samples Keras fed the model, and writes the
results into the epoch ``logs``.

**How samples are counted.** Keras does not give callbacks the batches. At ``on_train_begin``
(and ``on_test_begin``) the callback finds the data adapter Keras built for this ``fit`` /
``evaluate`` call (the ``epoch_iterator`` local of the trainer's method, found on the call
stack - Keras internals, present in Keras 3.0-3.15 on every backend) and reads its public
properties ``num_batches``, ``batch_size``, ``has_partial_batch`` and ``partial_batch_size``.
The number of training steps run in an epoch comes from ``model.optimizer.iterations`` (a public
counter), so ``stop_training`` mid-epoch and ``steps_per_epoch`` are counted exactly; the last
partial batch is placed where the data adapter puts it (the last batch of each pass over the
data). Where that metadata is missing (generators, ``tf.data`` pipelines whose batch dimension
is not static, ``torch`` ``DataLoader`` with a custom batch sampler), ``batch_size=`` /
``samples_per_epoch=`` / ``validation_samples=`` tell the callback, and without them
``on_train_begin`` raises a :class:`~wattwise.errors.ConfigurationError` that names them.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

import keras

from wattwise._adapter import AdapterMixin, rank_summary_path
from wattwise.errors import (
    ConfigurationError,
    MeterUnavailableError,
)
from wattwise.meters.base import Meter

if TYPE_CHECKING:
    from typing_extensions import Self

    from wattwise.tbwriter import EventFileWriter
    from wattwise.tracker import EnergyTracker, PhaseRecord

__all__ = ["METRIC_QUANTITIES", "EnergyMonitor", "SamplePlan", "metric_keys"]

log = logging.getLogger("wattwise")

#: Quantities written into the epoch ``logs`` per phase (``energy_<quantity>`` for training,
#: ``val_energy_<quantity>`` for validation), plus ``joules_<domain>`` per measured domain.
METRIC_QUANTITIES: tuple[str, ...] = ("joules", "joules_per_sample", "watts", "active_joules", "co2_g")

_PHASE_PREFIX = {"train": "", "validate": "val_", "test": "test_", "predict": "predict_"}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _domain_key(domain: str) -> str:
    """``"cpu:package-0"`` -> ``"cpu_package_0"`` (safe as a TensorBoard / CSV column name)."""
    return "".join(c if c.isalnum() else "_" for c in domain)


def metric_keys(rec: PhaseRecord) -> dict[str, float]:
    """The ``logs`` entries for one phase record (unknown values left out, never 0).

    Keys: ``<phase_prefix>energy_<quantity>`` with phase prefix ``""`` (train), ``"val_"``
    (validate), ``"test_"``, ``"predict_"``; ``energy_estimated_`` instead of ``energy_`` for
    estimates; per-domain ``energy_joules_<domain>`` with the domain's non-alphanumerics
    replaced by ``_`` (``energy_joules_gpu_0``, ``energy_joules_cpu_package_0``).
    """
    flat = rec.metrics()
    stem = _PHASE_PREFIX.get(rec.phase, rec.phase + "_") + (
        "energy_estimated_" if rec.estimated else "energy_"
    )
    out: dict[str, float] = {}
    for q, v in flat.items():
        if v is None or not math.isfinite(v):
            continue
        if q in METRIC_QUANTITIES:
            out[stem + q] = float(v)
        elif q.startswith("joules/"):
            out[stem + "joules_" + _domain_key(q[len("joules/"):])] = float(v)
    return out


@dataclass
class SamplePlan:
    """Samples per batch of one Keras data pass, and where the next batch comes from.

    Batches of a pass over the data are ``batch_size`` samples each except the last, which
    has ``last_batch_size`` samples. ``num_batches`` None: the pass length is unknown (every
    batch is ``batch_size``). With ``steps_per_epoch`` smaller than a pass, Keras keeps the
    iterator across epochs; ``cursor`` follows it so the partial batch lands in the right epoch.

    Attributes:
        batch_size: samples in a full batch.
        num_batches: batches in one pass over the data, or None when unknown.
        last_batch_size: samples in the last batch of a pass (== batch_size when full).
        source: how the numbers were found (for the run summary and error messages).
        epoch_samples: a fixed samples-per-epoch the user gave (overrides per-batch counting).
        cursor: index of the next batch within the pass.
    """

    batch_size: int
    num_batches: int | None
    last_batch_size: int
    source: str
    epoch_samples: int | None = None
    cursor: int = 0

    def take(self, steps: int) -> list[int]:
        """Sizes of the next ``steps`` batches, in samples; advances the cursor."""
        if self.epoch_samples is not None:
            if steps <= 0:
                return []
            full, rest = divmod(self.epoch_samples, steps)
            return [full + (1 if i < rest else 0) for i in range(steps)]
        sizes: list[int] = []
        n = self.num_batches
        for _ in range(max(steps, 0)):
            if n is not None and self.cursor == n - 1:
                sizes.append(self.last_batch_size)
            else:
                sizes.append(self.batch_size)
            self.cursor += 1
            if n is not None and self.cursor >= n:
                self.cursor = 0
        return sizes

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description for the run summary."""
        return {
            "batch_size": self.batch_size,
            "num_batches": self.num_batches,
            "last_batch_size": self.last_batch_size,
            "epoch_samples": self.epoch_samples,
            "source": self.source,
        }


# ----------------------------------------------------------------------------------------------
# finding what Keras knows about the data


def _find_trainer_frame(model: Any, method: str) -> FrameType | None:
    """The frame of ``model.<method>`` (``fit`` / ``evaluate``) that is calling us, if any."""
    frame = sys._getframe(1)
    depth = 0
    while frame is not None and depth < 40:
        if frame.f_code.co_name == method and frame.f_locals.get("self") is model:
            return frame
        frame = frame.f_back  # type: ignore[assignment]
        depth += 1
    return None


def _tf_dataset_samples(dataset: Any) -> tuple[int | None, int | None]:
    """(samples in one pass, batch size) of a ``tf.data`` pipeline ending in ``.batch(n)``.

    Walks element-count-preserving stages (map, prefetch, cache, options...) back to the batch
    stage and reads its batch size and its input's cardinality. (None, None) when unknown.
    """
    preserving = ("Map", "ParallelMap", "Prefetch", "Cache", "Options", "Shuffle")
    ds = dataset
    for _ in range(20):
        name = type(ds).__name__.lstrip("_")
        if name in ("BatchDataset", "ParallelBatchDataset"):
            try:
                bs = int(ds._batch_size)
                drop = bool(ds._drop_remainder)
                inner = int(ds._input_dataset.cardinality())
            except Exception:  # noqa: BLE001
                return None, None
            if inner < 0 or bs < 1:
                return None, None
            return ((inner // bs) * bs if drop else inner), bs
        if not any(name.startswith(p) for p in preserving):
            return None, None
        ds = getattr(ds, "_input_dataset", None)
        if ds is None:
            return None, None
    return None, None


def _item_size(batch: Any) -> int | None:
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    if isinstance(x, Mapping):
        x = next(iter(x.values()), None)
    if isinstance(x, (tuple, list)):
        x = x[0] if x else None
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) == 0 or shape[0] is None:
        return None
    return int(shape[0])


def plan_from_adapter(adapter: Any) -> SamplePlan | None:
    """A :class:`SamplePlan` from a Keras data adapter's metadata, or None when it can't tell."""
    kind = type(adapter).__name__
    num_batches = adapter.num_batches
    if kind == "TFDatasetAdapter":
        dataset = getattr(adapter, "_dataset", None)
        bs = adapter.batch_size
        if bs is not None:  # static batch dimension: every batch has exactly bs samples
            return SamplePlan(int(bs), num_batches, int(bs), "tf.data static batch size")
        total, bs2 = _tf_dataset_samples(dataset)
        if total is not None and bs2 is not None and num_batches:
            last = total - (num_batches - 1) * bs2
            if 0 < last <= bs2:
                return SamplePlan(bs2, num_batches, last, "tf.data batch stage and cardinality")
        return None
    if kind == "TorchDataLoaderAdapter":
        loader = getattr(adapter, "_dataloader", None)
        bs = adapter.batch_size
        if loader is None or bs is None or num_batches is None:
            return None
        if getattr(loader, "drop_last", False):
            return SamplePlan(int(bs), num_batches, int(bs), "torch DataLoader (drop_last)")
        sampler = getattr(loader, "sampler", None)
        try:
            total = len(sampler) if sampler is not None else len(loader.dataset)
        except TypeError:
            return None
        last = total - (num_batches - 1) * int(bs)
        if not 0 < last <= bs:
            return None
        return SamplePlan(int(bs), num_batches, last, "torch DataLoader")
    if kind == "PyDatasetAdapter":
        ds = getattr(adapter, "py_dataset", None)
        if ds is None or num_batches is None or num_batches < 1:
            return None
        try:  # PyDataset batches: all full but the last (Keras's documented pattern)
            first = _item_size(ds[0])
            last = _item_size(ds[num_batches - 1]) if num_batches > 1 else first
        except Exception:  # noqa: BLE001
            return None
        if first is None or last is None:
            return None
        return SamplePlan(first, num_batches, last, "PyDataset first and last batch")
    bs = adapter.batch_size
    if bs is None or num_batches is None:
        return None
    has_partial = adapter.has_partial_batch
    if has_partial is None:
        return None
    last = int(adapter.partial_batch_size) if has_partial else int(bs)
    return SamplePlan(int(bs), num_batches, last, f"{kind} metadata")


def _plan_from_options(batch_size: int | None, epoch_samples: int | None,
                       num_batches: int | None, what: str) -> SamplePlan | None:
    if epoch_samples is not None:
        return SamplePlan(batch_size or 1, num_batches, batch_size or 1, what,
                          epoch_samples=epoch_samples)
    if batch_size is not None:
        return SamplePlan(batch_size, num_batches, batch_size, "batch_size= option")
    return None


def _env_int(*names: str) -> int | None:
    for n in names:
        v = os.environ.get(n)
        if v is not None and v.strip().lstrip("-").isdigit():
            return int(v)
    return None


def _ranks() -> tuple[int, int]:
    """(global rank, local rank) of this process in a multi-worker run; (0, 0) otherwise."""
    global_rank = _env_int("RANK", "OMPI_COMM_WORLD_RANK", "SLURM_PROCID")
    if global_rank is None:
        tf_config = os.environ.get("TF_CONFIG")
        if tf_config:
            import json

            try:
                task = json.loads(tf_config).get("task", {})
                global_rank = int(task.get("index", 0)) if task.get("type") != "ps" else 0
            except (ValueError, TypeError, AttributeError):
                global_rank = None
    if global_rank is None and "jax" in sys.modules and keras.backend.backend() == "jax":
        try:
            global_rank = int(sys.modules["jax"].process_index())
        except Exception:  # noqa: BLE001
            global_rank = None
    local = _env_int("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")
    g = global_rank or 0
    return g, (local if local is not None else (0 if g == 0 else g))


def _zeros_batch(model: Any, batch_size: int) -> Any:
    """A batch of zeros shaped like the model's inputs (at most 8 rows), or None if unknown."""
    import numpy as np

    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None
    if not inputs:
        return None
    rows = max(1, min(int(batch_size), 8))
    arrays = []
    for t in inputs:
        shape = tuple(t.shape)[1:]
        if any(d is None for d in shape):
            return None
        arrays.append(np.zeros((rows, *shape), dtype=str(getattr(t, "dtype", "float32"))))
    return arrays[0] if len(arrays) == 1 else arrays


# ----------------------------------------------------------------------------------------------


class EnergyMonitor(keras.callbacks.Callback, AdapterMixin):  # type: ignore[misc]
    """Measure the energy of Keras training and validation; write it into the epoch ``logs``.

    Joules come from hardware counters (NVML for GPUs, RAPL for CPUs) read at window boundaries
    only (train start and end of every epoch, validation start and end); per-batch hooks are
    not even defined unless ``log_every_n_steps`` is set, so Keras keeps its asynchronous
    callback dispatch.

    **Keys written into the epoch logs** (list ``EnergyMonitor`` *before* ``CSVLogger``,
    ``keras.callbacks.TensorBoard`` and anything else that reads ``logs`` - ``History`` is
    always last - so they record them):

    * ``energy_joules`` - joules of the epoch's training steps, all measured domains summed
      (validation excluded);
    * ``energy_joules_per_sample`` - that divided by the training samples of the epoch;
    * ``energy_watts`` - joules / wall seconds of the training window;
    * ``energy_active_joules`` (idle baseline measured) and ``energy_co2_g`` (carbon
      intensity known);
    * ``energy_joules_<domain>`` per domain, non-alphanumerics as ``_``: ``energy_joules_gpu_0``,
      ``energy_joules_cpu_package_0``, ``energy_joules_cpu_dram_0``;
    * ``val_energy_joules``, ``val_energy_joules_per_sample``, ``val_energy_watts`` (and the
      others) for the validation Keras runs inside ``fit`` (Keras's ``val_`` convention, so
      ``keras.callbacks.TensorBoard`` puts them in its validation run);
    * estimates (no hardware counter, e.g. codecarbon's model): ``energy_estimated_...`` and
      ``val_energy_estimated_...`` instead.

    Unknown values (a window shorter than a counter's update period, a failed meter, an unknown
    sample count) are left out, never written as 0. Step-level (``log_every_n_steps``):
    ``energy_step_joules``, ``energy_step_joules_per_sample``, ``energy_step_watts`` in the
    batch ``logs`` and, with ``log_dir``, as ``batch_energy_step_...`` scalars at the global step.

    ``log_dir=``: the callback writes the epoch values itself as TensorBoard scalars (no
    TensorFlow needed: works on the torch and JAX backends) to ``<log_dir>/train`` and
    ``<log_dir>/validation``, tags ``epoch_energy_joules``... like Keras's TensorBoard callback,
    so both can share a ``log_dir``.

    Standalone ``model.evaluate(..., callbacks=[monitor])`` / ``model.predict(...)`` are measured
    as the ``test`` / ``predict`` phase (run summary and ``log_dir`` only; Keras returns its own
    results). A meter failing mid-run is
    reported once and dropped; training continues with what was measured kept.

    **Interruption.** Keras has no exception hook: the summary file is rewritten after every
    epoch; use the monitor as a context manager around ``fit`` (``with monitor:
    model.fit(..., callbacks=[monitor])``) to get the final summary with status
    ``"interrupted"`` / ``"failed"`` on Ctrl-C or an error, or call :meth:`finish` yourself.
    Otherwise the tracker's exit handler writes it when the interpreter exits.

    Args:
        meters: ``"auto"``, a list of meter names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
            ``"codecarbon"``) or :class:`~wattwise.meters.Meter` instances.
        log_dir: directory for TensorBoard event files written by wattwise (default None: none).
        log_every_n_steps: step-level energy every this many training batches, at the earliest
            ``min_window_s`` after the previous step window; None (default) = off.
        min_window_s: shortest step-level window, in seconds (default 1.0).
        summary_path: where the run summary JSON is written (rewritten after every epoch,
            final at the end); ``"auto"`` (default) = ``wattwise_summary.json`` in ``log_dir``
            when one is given, else none; None writes none.
        idle_baseline_s: seconds of idle power measured at train start (default 0.0 = off).
        advice: run the cache-aware sizing check at train start and warn
            (:class:`~wattwise.errors.SizingWarning`, once) when the working set is far from a
            cache boundary (default True). Keras gives callbacks no batch: the check uses the
            model's input shapes and the batch size Keras's data adapter reports.
        coefficients: energy-model coefficients for the sizing check (None = bundled).
        hardware: hardware description for the sizing check (default ``"auto"``).
        batch_size: samples per batch (training and validation), for data whose batch size
            Keras cannot report (generators, ``tf.data`` with a dynamic batch dimension);
            every batch is counted as full. Default None (ask Keras).
        samples_per_epoch: training samples per epoch, exact, for such data (default None).
        validation_samples: validation samples per validation run, for such data (default None).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for ``co2_g`` figures (default None).
        country_iso_code: ISO 3166 alpha-3 code for codecarbon's offline carbon intensity.
        print_summary: print the run table at the end of ``fit`` (default True).
        run_name: a name for the run summary (default None).

    Raises:
        ConfigurationError: on a bad argument (at construction), or at ``on_train_begin`` when
            the training samples per batch can be found neither from Keras nor from
            ``batch_size`` / ``samples_per_epoch``.
        MeterUnavailableError: at ``on_train_begin`` (before any training step) when a meter
            asked for by name cannot open; the message says how to fix it. Meters that are
            merely absent under ``"auto"`` give one warning instead.

    Example:
        >>> from wattwise.keras import EnergyMonitor
        >>> from wattwise.testing import FakeMeter
        >>> monitor = EnergyMonitor(meters=[FakeMeter(("cpu:package-0",))], print_summary=False)
        >>> type(monitor).__name__
        'EnergyMonitor'
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        # Step-level logging needs on_train_batch_end; Keras turns async dispatch off for any
        # callback that overrides it, so only a step-level monitor is of the subclass that does.
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
        name = "EnergyMonitor"
        if log_every_n_steps is not None and (not _is_int(log_every_n_steps) or log_every_n_steps < 1):
            raise ConfigurationError(
                f"{name}(log_every_n_steps={log_every_n_steps!r}): expected None (no step-level "
                "metrics) or an int >= 1 (log every that many training batches)"
            )
        for arg, val in (("batch_size", batch_size), ("samples_per_epoch", samples_per_epoch),
                         ("validation_samples", validation_samples)):
            if val is not None and (not _is_int(val) or val < 1):
                raise ConfigurationError(
                    f"{name}({arg}={val!r}): expected None (let Keras tell) or an int >= 1"
                )
        for arg, flag in (("advice", advice), ("print_summary", print_summary)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{name}({arg}={flag!r}): expected True or False")
        if log_dir is not None and (not isinstance(log_dir, (str, PathLike)) or not str(log_dir)):
            raise ConfigurationError(
                f"{name}(log_dir={log_dir!r}): expected None or a directory path such as 'logs/run1'"
            )
        self._tracker_kwargs: dict[str, Any] = {
            "meters": meters if isinstance(meters, str) else list(meters),
            "min_window_s": min_window_s,
            "summary_path": None if summary_path == "auto" else summary_path,
            "idle_baseline_s": idle_baseline_s,
            "carbon_intensity_g_per_kwh": carbon_intensity_g_per_kwh,
            "country_iso_code": country_iso_code,
            "run_name": run_name,
        }
        from wattwise.tracker import EnergyTracker

        EnergyTracker(**self._tracker_kwargs)  # validates the shared arguments (and only that)
        if summary_path == "auto" and log_dir is not None:
            self._tracker_kwargs["summary_path"] = Path(log_dir) / "wattwise_summary.json"
        self._log_dir = Path(log_dir) if log_dir is not None else None
        self._log_every_n_steps = log_every_n_steps
        self._min_window_s = float(min_window_s)
        self._advice = advice
        self._coefficients = coefficients
        self._hardware = hardware
        self._batch_size_opt = batch_size
        self._samples_per_epoch = samples_per_epoch
        self._validation_samples = validation_samples
        self._print_summary = print_summary
        self._restored_state: Mapping[str, Any] | None = None
        self.hook_time_s = 0.0  # time spent in this callback's hooks (benchmarks read it)
        self.summary: dict[str, Any] | None = None  # the final run summary, after finish
        self._run_count = {"test": 0, "predict": 0}  # standalone evaluate / predict calls
        self._reset_run_state()

    # ------------------------------------------------------------------------------------------
    # state
    def _reset_run_state(self) -> None:
        self.tracker: EnergyTracker | None = None
        self._finished = False
        self._broken = False
        self._window: str | None = None
        self._in_fit = False
        self._epoch = 0
        self._iterations_at_start: int | None = None
        self._train_steps_added = 0
        self._train_plan: SamplePlan | None = None
        self._val_plan: SamplePlan | None = None
        self._val_plan_resolved = False
        self._writers: dict[str, EventFileWriter] = {}
        self._global_rank = 0
        self._steps_since_log = 0
        self._last_step_batch = -1
        self._global_step = 0
        self._last_step_read_s = 0.0
        self._val_iterator: Any = None
        self._val_record: PhaseRecord | None = None

    def _make_tracker(self) -> EnergyTracker:
        from wattwise.tracker import EnergyTracker

        kwargs = dict(self._tracker_kwargs)
        global_rank, local_rank = _ranks()
        self._global_rank = global_rank
        kwargs["summary_path"] = rank_summary_path(kwargs.get("summary_path"), global_rank)
        # gpu_devices=None: NVML covers every visible GPU, i.e. every device a tf.distribute
        # strategy or keras.distribution uses on this node.
        return EnergyTracker(**kwargs, node_meters=local_rank == 0, gpu_devices=None)

    def _iterations(self) -> int | None:
        opt = getattr(self.model, "optimizer", None)
        it = getattr(opt, "iterations", None)
        if it is None:
            return None
        try:
            return int(keras.ops.convert_to_numpy(it))
        except Exception:  # noqa: BLE001
            return None

    # ------------------------------------------------------------------------------------------
    # sample plans
    def _resolve_plan(self, method: str, epoch_iterator: Any, *, train: bool) -> SamplePlan | None:
        num_batches = getattr(epoch_iterator, "num_batches", None) if epoch_iterator else None
        adapter = getattr(epoch_iterator, "data_adapter", None) if epoch_iterator else None
        if train and self._samples_per_epoch is not None:
            return _plan_from_options(self._batch_size_opt, self._samples_per_epoch, num_batches,
                                      "samples_per_epoch= option")
        if not train and self._validation_samples is not None and method != "predict":
            return _plan_from_options(self._batch_size_opt, self._validation_samples,
                                      num_batches, "validation_samples= option")
        plan = None
        if adapter is not None:
            try:
                plan = plan_from_adapter(adapter)
            except Exception as e:  # noqa: BLE001 - internals changed: fall back to the options
                log.debug("EnergyMonitor: data adapter not readable: %r", e)
        if plan is None:
            plan = _plan_from_options(self._batch_size_opt, None, num_batches, "")
        return plan

    def _no_plan_message(self, epoch_iterator: Any, phase: str) -> str:
        adapter = getattr(epoch_iterator, "data_adapter", None)
        what = (type(adapter).__name__ if adapter is not None
                else "data (no Keras fit/evaluate call found on the stack: a custom loop?)")
        opt = "samples_per_epoch" if phase == "train" else "validation_samples"
        if phase == "predict":
            return (
                f"EnergyMonitor cannot count the predict samples per batch: Keras's {what} does "
                "not report them; pass EnergyMonitor(batch_size=<samples per batch>) when every "
                "batch is full. Predict joules are still reported."
            )
        return (
            f"EnergyMonitor cannot count the {phase} samples per batch: Keras's {what} does "
            "not report a batch size and the size of the last batch (generators, tf.data "
            "pipelines with a dynamic batch dimension, DataLoaders with a custom batch sampler "
            f"do not). Pass EnergyMonitor({opt}=<samples per epoch>) for exact numbers, or "
            "EnergyMonitor(batch_size=<samples per batch>) when every batch is full."
        )

    # ------------------------------------------------------------------------------------------
    # windows
    def _start_window(self, phase: str, epoch: int) -> None:
        if self._broken or self.tracker is None:
            return
        try:
            self.tracker.start_window(phase, epoch)
            self._window = phase
        except Exception as e:  # noqa: BLE001
            self._guard(f"starting a {phase} window", e)

    def _add_batches(self, sizes: Sequence[int]) -> None:
        if self._broken or self.tracker is None or self._window is None:
            return
        try:
            for n in sizes:
                self.tracker.add_batch(n)
        except Exception as e:  # noqa: BLE001
            self._guard("counting batches", e)

    def _end_window(self) -> PhaseRecord | None:
        if self._broken or self.tracker is None or self._window is None:
            return None
        self._window = None
        try:
            return self.tracker.end_window()
        except Exception as e:  # noqa: BLE001
            self._guard("ending a window", e)
            return None

    def _close_train_window(self) -> None:
        """End the open train window, counting the steps Keras ran since it opened."""
        if self._window != "train":
            return
        steps = None
        now = self._iterations()
        if now is not None and self._iterations_at_start is not None:
            steps = now - self._iterations_at_start
        if steps is None or steps < 0:
            steps = int(self.params.get("steps") or 0) if self.params else 0
        steps -= self._train_steps_added  # step-level mode added some batches already
        if self._train_plan is not None and steps > 0:
            self._add_batches(self._train_plan.take(steps))
        self._train_steps_added = 0
        self._end_window()

    # ------------------------------------------------------------------------------------------
    # lifecycle
    def _start_tracker(self, stage: str) -> None:
        if self.tracker is not None and not self._finished:
            self._finish("interrupted")  # a previous fit that never reached on_train_end
        if self._restored_state is None and self.tracker is not None and self._finished:
            try:
                self._restored_state = self.tracker.state_dict()
            except Exception:  # noqa: BLE001
                self._restored_state = None
        restored = self._restored_state
        self._reset_run_state()
        try:
            self.tracker = self._make_tracker()
            if restored is not None:
                self.tracker.load_state_dict(restored)
            self.tracker.start(
                hardware=None,
                metadata={
                    "framework": "keras",
                    "framework_version": getattr(keras, "__version__", None),
                    "keras_backend": keras.backend.backend(),
                    "stage": stage,
                    "global_rank": self._global_rank,
                    "model": type(self.model).__name__ if self.model is not None else None,
                },
            )
        except (MeterUnavailableError, ConfigurationError):
            # a meter asked for by name that cannot open, or a bad setting: raise before any
            # training step, with the fix in the message (STYLE: warn or raise by rule)
            self.tracker = None
            raise
        except Exception as e:  # noqa: BLE001 - measurement never kills training
            self._guard("starting the energy tracker", e)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        frame = _find_trainer_frame(self.model, "fit")
        epoch_iterator = frame.f_locals.get("epoch_iterator") if frame is not None else None
        plan = self._resolve_plan("fit", epoch_iterator, train=True)
        del frame
        if plan is None:
            raise ConfigurationError(self._no_plan_message(epoch_iterator, "train"))
        self._start_tracker("fit")
        self._in_fit = True
        self._train_plan = plan
        if self._advice and not self._broken:
            self._check_sizing(plan)
        self.hook_time_s += time.perf_counter() - t0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        self._epoch = int(epoch)
        self._iterations_at_start = self._iterations()
        self._train_steps_added = 0
        self._start_window("train", self._epoch)
        self._last_step_read_s = time.monotonic()
        self.hook_time_s += time.perf_counter() - t0

    def on_test_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        frame = _find_trainer_frame(self.model, "evaluate")
        epoch_iterator = frame.f_locals.get("epoch_iterator") if frame is not None else None
        del frame
        if self._in_fit and not self._finished:
            self._close_train_window()  # validation is its own phase
            if not self._val_plan_resolved:
                self._val_plan_resolved = True
                self._val_plan = self._resolve_plan("evaluate", epoch_iterator, train=False)
                if self._val_plan is None:
                    msg = self._no_plan_message(epoch_iterator, "validation")
                    warnings.warn(msg + " Validation joules are still reported.", stacklevel=2)
            self._val_iterator = epoch_iterator
            self._start_window("validate", self._epoch)
        else:  # standalone evaluate(): the test phase, a run of its own
            self._standalone_begin("test", epoch_iterator)
        self.hook_time_s += time.perf_counter() - t0

    def _standalone_begin(self, phase: str, epoch_iterator: Any) -> None:
        self._start_tracker(phase)
        self._val_plan = self._resolve_plan(phase, epoch_iterator, train=False)
        if self._val_plan is None:
            warnings.warn(self._no_plan_message(epoch_iterator, phase), stacklevel=3)
        self._val_iterator = epoch_iterator
        self._start_window(phase, self._run_count[phase])

    def _count_eval_batches(self) -> None:
        it = self._val_iterator
        steps = getattr(it, "num_batches", None) if it is not None else None
        if steps and self._val_plan is not None:
            self._add_batches(self._val_plan.take(int(steps)))

    def _standalone_end(self, phase: str) -> None:
        self._count_eval_batches()
        rec = self._end_window()
        try:
            if self.tracker is not None and not self._broken:
                self.tracker.end_epoch()
        except Exception as e:  # noqa: BLE001
            self._guard(f"ending the {phase} epoch", e)
        if rec is not None:
            self._write_scalars(phase, metric_keys(rec), self._run_count[phase])
        self._run_count[phase] += 1
        self._finish("completed")

    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        if self._in_fit and not self._finished:
            self._count_eval_batches()
            self._val_record = self._end_window()
        else:
            self._standalone_end("test")
        self.hook_time_s += time.perf_counter() - t0

    def on_predict_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._in_fit and not self._finished:
            return  # predict() called from inside fit (e.g. by another callback): not measured
        t0 = time.perf_counter()
        frame = _find_trainer_frame(self.model, "predict")
        epoch_iterator = frame.f_locals.get("epoch_iterator") if frame is not None else None
        del frame
        self._standalone_begin("predict", epoch_iterator)
        self.hook_time_s += time.perf_counter() - t0

    def on_predict_end(self, logs: Mapping[str, Any] | None = None) -> None:
        if self._in_fit and not self._finished:
            return
        t0 = time.perf_counter()
        self._standalone_end("predict")
        self.hook_time_s += time.perf_counter() - t0

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        self._close_train_window()
        epoch_rec = None
        if self.tracker is not None and not self._broken:
            try:
                epoch_rec = self.tracker.end_epoch()
            except Exception as e:  # noqa: BLE001
                self._guard("ending an epoch", e)
        self._val_record = None
        if epoch_rec is not None:
            values: dict[str, float] = {}
            for phase in ("train", "validate"):
                rec = epoch_rec.phases.get(phase)
                if rec is not None:
                    vals = metric_keys(rec)
                    values.update(vals)
                    self._write_scalars("train" if phase == "train" else "validation", vals, int(epoch))
            if logs is not None:
                logs.update(values)
        self.hook_time_s += time.perf_counter() - t0

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        summary = self._finish("completed")
        self._print(summary)
        self.hook_time_s += time.perf_counter() - t0

    # ------------------------------------------------------------------------------------------
    # finishing, interruption
    def finish(self, status: str = "completed", error: BaseException | None = None) -> dict[str, Any] | None:
        """Close windows and meters and write the final run summary (idempotent).

        Called by ``on_train_end``; call it yourself (or use the monitor as a context manager)
        when ``fit`` was interrupted, since Keras has no exception hook.

        Args:
            status: ``"completed"``, ``"interrupted"`` or ``"failed"``.
            error: the exception that stopped the run, if any.

        Returns:
            The run summary dict, or None when nothing was measured.
        """
        return self._finish(status, error)

    def _finish(self, status: str, error: BaseException | None = None) -> dict[str, Any] | None:
        self._in_fit = False
        self._val_iterator = None  # Keras drops its cached eval iterator after fit; so do we
        for w in self._writers.values():
            try:
                w.close()
            except Exception as e:  # noqa: BLE001
                log.debug("EnergyMonitor: closing an event file failed: %r", e)
        self._writers = {}
        if self.tracker is None or self._finished:
            return None
        self._finished = True
        self._window = None
        try:
            summary = self.tracker.finish(status, error)  # type: ignore[arg-type]
            self._restored_state = self.tracker.state_dict()
        except Exception as e:  # noqa: BLE001
            self._guard("writing the run summary", e)
            return None
        self.summary = summary
        return summary

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self._finish("completed")
            return
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        self._print(self._finish(status, exc))

    # ------------------------------------------------------------------------------------------
    # TensorBoard (wattwise's own writer), sizing
    def _write_scalars(self, run: str, values: Mapping[str, float], step: int,
                       tag_prefix: str = "epoch_") -> None:
        if self._log_dir is None or not values or self._global_rank != 0:
            return
        try:
            w = self._writers.get(run)
            if w is None:
                from wattwise.tbwriter import EventFileWriter

                w = self._writers[run] = EventFileWriter(self._log_dir / run)
            for key, value in values.items():
                tag = key[4:] if run == "validation" and key.startswith("val_") else key
                w.add_scalar(tag_prefix + tag, value, step)
        except Exception as e:  # noqa: BLE001 - logging never kills training
            log.warning("EnergyMonitor: writing TensorBoard scalars failed: %r", e)

    def _check_sizing(self, plan: SamplePlan) -> None:
        if self._global_rank != 0 or self.tracker is None:
            return
        try:
            from wattwise.sizing import check_keras_model, record_advice
        except ImportError as e:
            log.debug("EnergyMonitor: sizing check unavailable (%r)", e)
            return
        try:
            batch = _zeros_batch(self.model, plan.batch_size)
            if batch is None:
                log.debug("EnergyMonitor: sizing check skipped: the model has no static inputs")
                return
            n_samples = None
            if plan.epoch_samples is not None:
                n_samples = plan.epoch_samples
            elif plan.num_batches is not None:
                n_samples = (plan.num_batches - 1) * plan.batch_size + plan.last_batch_size
            advice = check_keras_model(
                self.model,
                batch,  # Keras gives callbacks no batch: zeros of the model's input shapes
                batch_size=plan.batch_size,
                n_samples=n_samples,
                hardware=self._hardware,
                coefficients=self._coefficients,
            )
        except Exception as e:  # noqa: BLE001 - the advice never breaks training
            log.info("EnergyMonitor: no sizing advice for this model: %r", e)
            return
        record_advice(self.tracker, advice)


class _StepEnergyMonitor(EnergyMonitor):
    """An :class:`EnergyMonitor` with step-level logging (``log_every_n_steps`` set).

    The only class that overrides ``on_train_batch_end``: Keras then runs batch callbacks
    synchronously, the price of step-level readings.
    """

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        t0 = time.perf_counter()
        if self._window != "train" or self._train_plan is None or self._broken:
            return
        n = int(batch) - self._last_step_batch  # end_step index: steps_per_execution batches
        n = max(n, 1)
        self._last_step_batch = int(batch)
        self._add_batches(self._train_plan.take(n))
        self._train_steps_added += n
        self._global_step += n
        self._steps_since_log += n
        if self._steps_since_log >= (self._log_every_n_steps or 1):
            now = time.monotonic()
            if now - self._last_step_read_s >= self._min_window_s:
                self._steps_since_log = 0
                self._last_step_read_s = now
                self._step_log(logs)
        self.hook_time_s += time.perf_counter() - t0

    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        super().on_epoch_begin(epoch, logs)
        self._last_step_batch = -1
        self._steps_since_log = 0

    def _step_log(self, logs: dict[str, Any] | None) -> None:
        try:
            rec = self.tracker.step_reading()  # type: ignore[union-attr]
        except Exception as e:  # noqa: BLE001
            self._guard("a step-level reading", e)
            return
        if rec is None:
            return
        prefix = "energy_estimated_step_" if rec.estimated else "energy_step_"
        values = {prefix + "joules": rec.joules, prefix + "joules_per_sample": rec.joules_per_sample,
                  prefix + "watts": rec.watts}
        metrics = {k: float(v) for k, v in values.items() if v is not None and math.isfinite(v)}
        if logs is not None:
            logs.update(metrics)
        self._write_scalars("train", metrics, self._global_step, tag_prefix="batch_")
