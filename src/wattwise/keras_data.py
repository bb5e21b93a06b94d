"""Keras data handling for the callback: how many samples Keras fed the model, and ranks.

Keras does not give callbacks the batches. At ``on_train_begin`` (and ``on_test_begin``) the
callback finds the data adapter Keras built for this ``fit`` / ``evaluate`` call (the
``epoch_iterator`` local of the trainer's method, found on the call stack - Keras internals,
present in Keras 3.0-3.15 on every backend) and reads its public properties ``num_batches``,
``batch_size``, ``has_partial_batch`` and ``partial_batch_size`` into a :class:`SamplePlan`.
The training steps run in an epoch come from ``model.optimizer.iterations`` (a public
counter), so ``stop_training`` mid-epoch and ``steps_per_epoch`` are counted exactly; the last
partial batch is placed where the data adapter puts it. Where that metadata is missing
(generators, ``tf.data`` pipelines whose batch dimension is not static, ``torch``
``DataLoader`` with a custom batch sampler), ``batch_size=`` / ``samples_per_epoch=`` /
``validation_samples=`` tell the callback.

Nothing here imports keras at module import; :class:`SampleCounter` is the state the callback
composes for it (plans, the iteration count at epoch start, the eval iterator).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from types import FrameType
from typing import Any

from wattwise.samples import count_samples

__all__ = ["SampleCounter", "SamplePlan", "plan_from_adapter", "ranks", "zeros_batch"]

log = logging.getLogger("wattwise")


def _backend() -> str:
    import keras

    return str(keras.backend.backend())


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
            first = count_samples(ds[0])
            last = count_samples(ds[num_batches - 1]) if num_batches > 1 else first
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


def plan_from_options(batch_size: int | None, epoch_samples: int | None,
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


def ranks() -> tuple[int, int]:
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
    if global_rank is None and "jax" in sys.modules and _backend() == "jax":
        try:
            global_rank = int(sys.modules["jax"].process_index())
        except Exception:  # noqa: BLE001
            global_rank = None
    local = _env_int("LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")
    g = global_rank or 0
    return g, (local if local is not None else (0 if g == 0 else g))


def zeros_batch(model: Any, batch_size: int) -> Any:
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




def _iterations(model: Any) -> int | None:
    it = getattr(getattr(model, "optimizer", None), "iterations", None)
    if it is None:
        return None
    try:
        import keras

        return int(keras.ops.convert_to_numpy(it))
    except Exception:  # noqa: BLE001
        return None


def _epoch_iterator(model: Any, method: str) -> Any:
    frame = _find_trainer_frame(model, method)
    it = frame.f_locals.get("epoch_iterator") if frame is not None else None
    del frame
    return it


class SampleCounter:
    """Samples per phase of one Keras run: the training and evaluation plans, the optimizer's
    iteration count at the epoch start, the batches already handed over step by step.

    Args:
        batch_size, samples_per_epoch, validation_samples: the callback's options (None =
            ask Keras).
    """

    def __init__(self, batch_size: int | None, samples_per_epoch: int | None,
                 validation_samples: int | None) -> None:
        self._batch_size_opt = batch_size
        self._samples_per_epoch = samples_per_epoch
        self._validation_samples = validation_samples
        self.train: SamplePlan | None = None
        self.eval: SamplePlan | None = None
        self._eval_iterator: Any = None
        self._val_resolved = False
        self._iterations_at_start: int | None = None
        self.steps_added = 0  # train steps handed over by step-level hooks this epoch
        self.last_step_batch = -1

    def begin_fit(self, model: Any) -> SamplePlan:
        """Resolve the training plan; raise ConfigurationError naming the options if Keras
        cannot tell (before any training step)."""
        from wattwise.errors import ConfigurationError

        it = _epoch_iterator(model, "fit")
        plan = self._resolve_plan("fit", it, train=True)
        if plan is None:
            raise ConfigurationError(self._no_plan_message(it, "train"))
        self.train, self.eval, self._val_resolved = plan, None, False
        return plan

    def begin_epoch(self, model: Any) -> None:
        self._iterations_at_start = _iterations(model)
        self.steps_added, self.last_step_batch = 0, -1

    def train_batches(self, model: Any, params: Any) -> list[int]:
        """Sizes of the training batches run since :meth:`begin_epoch` and not yet handed over."""
        steps = None
        now = _iterations(model)
        if now is not None and self._iterations_at_start is not None:
            steps = now - self._iterations_at_start
        if steps is None or steps < 0:
            steps = int(params.get("steps") or 0) if params else 0
        steps -= self.steps_added
        self.steps_added += max(steps, 0)
        return self.train.take(steps) if self.train is not None and steps > 0 else []

    def step_batches(self, batch: int) -> list[int]:
        """Sizes of the batches up to Keras's batch index ``batch`` (step-level hooks)."""
        n = max(int(batch) - self.last_step_batch, 1)  # steps_per_execution batches per call
        self.last_step_batch = int(batch)
        self.steps_added += n
        return self.train.take(n) if self.train is not None else []

    def begin_eval(self, model: Any, method: str, phase: str) -> str | None:
        """Resolve the plan of an evaluation (``validate`` inside fit, once; ``test``,
        ``predict``); returns a warning text when its samples cannot be counted."""
        it = _epoch_iterator(model, method)
        self._eval_iterator = it
        if phase == "validate" and self._val_resolved:
            return None
        self._val_resolved = phase == "validate"
        self.eval = self._resolve_plan(method, it, train=False)
        return None if self.eval is not None else self._no_plan_message(it, phase)

    def eval_batches(self) -> list[int] | None:
        """Sizes of the evaluation's batches; None when unknown."""
        it, plan = self._eval_iterator, self.eval
        steps = getattr(it, "num_batches", None) if it is not None else None
        self._eval_iterator = None  # Keras drops its cached eval iterator after fit; so do we
        return plan.take(int(steps)) if steps and plan is not None else None

    def sizing_inputs(self) -> tuple[int, int | None] | None:
        """(batch size, samples per epoch or None) of the training plan, for the sizing check."""
        plan = self.train
        if plan is None:
            return None
        if plan.epoch_samples is not None:
            return plan.batch_size, plan.epoch_samples
        if plan.num_batches is not None:
            return plan.batch_size, (plan.num_batches - 1) * plan.batch_size + plan.last_batch_size
        return plan.batch_size, None
    def _resolve_plan(self, method: str, epoch_iterator: Any, *, train: bool) -> SamplePlan | None:
        num_batches = getattr(epoch_iterator, "num_batches", None) if epoch_iterator else None
        adapter = getattr(epoch_iterator, "data_adapter", None) if epoch_iterator else None
        if train and self._samples_per_epoch is not None:
            return plan_from_options(self._batch_size_opt, self._samples_per_epoch, num_batches,
                                      "samples_per_epoch= option")
        if not train and self._validation_samples is not None and method != "predict":
            return plan_from_options(self._batch_size_opt, self._validation_samples,
                                      num_batches, "validation_samples= option")
        plan = None
        if adapter is not None:
            try:
                plan = plan_from_adapter(adapter)
            except Exception as e:  # noqa: BLE001 - internals changed: fall back to the options
                log.debug("EnergyMonitor: data adapter not readable: %r", e)
        if plan is None:
            plan = plan_from_options(self._batch_size_opt, None, num_batches, "")
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

