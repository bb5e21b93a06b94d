"""Run by test_multiworker.py: one worker of a 2-worker ``MultiWorkerMirroredStrategy`` run.

Usage: python _multiworker_script.py WORKDIR METERS UJ_PER_STEP

``TF_CONFIG`` (set by the test) names the cluster ``{"worker": ["localhost:p0", "localhost:p1"]}``
and this worker's task index. Both workers are on one "node" and share the fake powercap tree
``WORKDIR/powercap``. ``METERS`` is ``instance`` (``meters=[RaplMeter(root=WORKDIR/powercap)]``)
or ``name`` (``meters=["rapl"]``; the test points ``WATTWISE_RAPL_ROOT`` at the tree).

Only worker 0 moves the counter, by ``UJ_PER_STEP`` µJ at the start of every training batch
(``on_train_batch_begin`` of a callback listed after the monitor: inside the monitor's train
window, never outside it). The model is built and compiled inside ``strategy.scope()``.

Writes ``WORKDIR/out.worker<I>.json`` (what the worker saw: replicas, steps, counter, weights,
history) and the run summary ``WORKDIR/run.json`` (worker 0) / ``WORKDIR/run.rank1.json``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

N_SAMPLES = 16
GLOBAL_BATCH = 8  # -> 2 steps per epoch, on each worker
EPOCHS = 2


def move_counter(counter: Path, delta_uj: int) -> None:
    """Add ``delta_uj`` to a fake ``energy_uj`` in place (one fixed-width pwrite: same inode, so
    open fds see it, and no reader ever sees a half-written value)."""
    fd = os.open(counter, os.O_RDWR)
    try:
        value = int(os.pread(fd, 64, 0))
        os.pwrite(fd, f"{value + delta_uj:020d}\n".encode(), 0)
    finally:
        os.close(fd)


def main(workdir: Path, meters_kind: str, uj_per_step: int) -> None:
    tf.config.threading.set_inter_op_parallelism_threads(1)  # 2 processes on a small machine
    tf.config.threading.set_intra_op_parallelism_threads(1)
    # must come first: it starts this worker's gRPC server and joins the cluster
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = int(strategy.cluster_resolver.task_id)

    import keras

    from wattwise.keras import EnergyMonitor
    from wattwise.meters import RaplMeter

    root = workdir / "powercap"
    counter = root / "intel-rapl:0" / "energy_uj"
    steps: list[tuple[int, int]] = []

    class MoveCounter(keras.callbacks.Callback):  # type: ignore[misc]
        """Worker 0 moves the node's counter once per training batch; every worker counts."""

        def __init__(self) -> None:
            super().__init__()
            self.epoch = -1

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            steps.append((self.epoch, batch))
            if task == 0:
                move_counter(counter, uj_per_step)

    meters: list[Any]
    if meters_kind == "instance":
        meters = [RaplMeter(root=root)]
    elif meters_kind == "name":
        meters = ["rapl"]
    else:
        raise SystemExit(f"METERS: expected 'instance' or 'name', got {meters_kind!r}")

    class MultiWorkerModel(keras.Sequential):  # type: ignore[misc]
        """Works around two places where Keras 3's TF trainer fails under
        MultiWorkerMirroredStrategy (keras-team/keras#20585, tensorflow/tensorflow#72388):

        * ``fit`` first builds the model's state from a batch that it averages with
          ``strategy.reduce`` ("Attempt to convert a value (PerReplica...) to a Tensor"): the
          state is built here from a local batch instead (``build_state``), and that step skipped;
        * the step's logs are averaged with ``strategy.reduce("MEAN", v, axis=0)``, which fails
          on scalars ("Invalid reduction dimension 0 for input with 0 dimensions"): the step
          returns them as 1-element vectors, which that reduction averages back to scalars.
        """

        def build_state(self, x: Any, y: Any) -> None:
            with strategy.scope():
                self._symbolic_build(data_batch=(x, y))

        def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
            pass

        def train_step(self, data: Any) -> Any:
            logs = super().train_step(data)
            return {k: keras.ops.reshape(v, (1,)) for k, v in logs.items()}

    keras.utils.set_random_seed(0)
    with strategy.scope():
        model = MultiWorkerModel([keras.Input((3,)), keras.layers.Dense(2)])
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    rng = np.random.default_rng(0)  # the same data on both workers; tf.distribute shards it
    x = rng.random((N_SAMPLES, 3), dtype=np.float32)
    y = rng.random((N_SAMPLES, 2), dtype=np.float32)
    model.build_state(x[:GLOBAL_BATCH], y[:GLOBAL_BATCH])
    monitor = EnergyMonitor(meters=meters, print_summary=False, advice=False,
                            summary_path=workdir / "run.json")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, verbose=0, shuffle=False,
                         callbacks=[monitor, MoveCounter()])
    out = {
        "task": task,
        "replicas": int(strategy.num_replicas_in_sync),
        "steps": steps,
        "iterations": int(model.optimizer.iterations.numpy()),
        "counter_uj": int(counter.read_text()),
        "weights": [float(np.sum(w)) for w in model.get_weights()],
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
    }
    (workdir / f"out.worker{task}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
