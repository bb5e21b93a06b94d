"""One timed fit in a fresh process, for benchmarks/peers.py and benchmarks/scale.py.

    python benchmarks/_peers_child.py '{"framework": "lightning", "config": "none", ...}'

The argument is a JSON object (see :func:`main`); the process prints one line
``PEERS_RESULT {...}`` with the timings, or ``PEERS_RESULT {"skipped": "why"}`` when the
configuration's packages cannot be imported. Timings, all ``time.perf_counter`` in this process:

* ``fit_s``: the energy tool's construction and ``start()`` (by-hand tools), ``trainer.fit`` /
  ``model.fit``, and the tool's ``stop()``: all the wall time the tool can add to a fit;
* ``start_s``: from the same start to the first ``on_train_batch_start`` (a timing callback
  placed first);
* ``epoch_s``: each epoch from its ``on_train_epoch_start`` (``on_epoch_begin``) to the next
  one's, the last to ``on_train_end``: so an epoch includes every callback's epoch-end hooks.

``counters`` points wattwise at a fake RAPL powercap tree (``WATTWISE_RAPL_ROOT``); the timing
callback moves its counter at 50 W of elapsed time at every hook it has (before the energy
callback's hooks of the same event), so the counter moves in every window as real RAPL does,
without a thread or a per-batch write.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

FAKE_WATTS = 50.0
MARK = "PEERS_RESULT "


class Clock:
    """The timings and the fake counter, shared by the Lightning and Keras timing callbacks."""

    def __init__(self, zone: Path | None, rank0: bool = True) -> None:
        self.zone = zone if rank0 else None
        self.t0 = time.perf_counter()
        self.first_batch: float | None = None
        self.epoch_starts: list[float] = []
        self.train_end: float | None = None

    def tick(self) -> None:
        if self.zone is not None:
            from wattwise.testing import set_rapl_energy

            set_rapl_energy(self.zone, int(1e9 + FAKE_WATTS * 1e6 * (time.perf_counter() - self.t0)))

    def epoch_start(self) -> None:
        self.epoch_starts.append(time.perf_counter())
        self.tick()

    def batch_start(self) -> None:
        if self.first_batch is None:
            self.first_batch = time.perf_counter()

    def end(self) -> None:
        if self.train_end is None:
            self.train_end = time.perf_counter()
        self.tick()

    def epochs(self) -> list[float]:
        ends = self.epoch_starts[1:] + ([self.train_end] if self.train_end is not None else [])
        return [b - a for a, b in zip(self.epoch_starts, ends)]


def fake_rapl(workdir: Path) -> Path:
    from wattwise.testing import fake_rapl_zone

    root = workdir / "powercap"
    zone = fake_rapl_zone(root / "intel-rapl:0", "package-0", 1_000_000_000)
    os.environ["WATTWISE_RAPL_ROOT"] = str(root)
    return zone


def wattwise_meters(mon: Any) -> str | None:
    """The meters the monitor used, from its run summary (what ``auto`` chose)."""
    try:
        summary = mon.tracker.summary()
        names = [f"{m.get('name')}({m.get('use')})" for m in summary.get("meters", [])]
        return ", ".join(names) or "none"
    except Exception as e:  # noqa: BLE001 - a report field, not the benchmark
        return f"? ({type(e).__name__})"


def run_lightning(opts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    import logging

    try:
        import lightning.pytorch as L
    except ImportError:
        import pytorch_lightning as L  # type: ignore[no-redef]
    import torch

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    config = opts["config"]
    ddp = int(opts.get("devices", 1)) > 1
    rank0 = int(os.environ.get("LOCAL_RANK", "0")) == 0
    zone = fake_rapl(workdir) if config.startswith("wattwise-counters") else None
    if config == "wattwise-auto" and opts.get("auto_rapl_root"):
        os.environ["WATTWISE_RAPL_ROOT"] = opts["auto_rapl_root"]
    clock = Clock(zone, rank0)

    class Timer(L.Callback):
        def setup(self, *a: Any, **k: Any) -> None:
            clock.tick()

        def on_fit_start(self, *a: Any) -> None:
            clock.tick()

        def on_train_epoch_start(self, *a: Any) -> None:
            clock.epoch_start()

        def on_train_batch_start(self, *a: Any) -> None:
            if clock.first_batch is None:
                clock.batch_start()

        def on_train_epoch_end(self, *a: Any) -> None:
            clock.tick()

        def on_train_end(self, *a: Any) -> None:
            clock.end()

        def teardown(self, *a: Any, **k: Any) -> None:
            clock.tick()

    class MLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(32, 32), torch.nn.ReLU(), torch.nn.Linear(32, 32), torch.nn.ReLU(),
                torch.nn.Linear(32, 10))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    n = opts["batches"] * opts["batch_size"] * (2 if ddp else 1)  # DDP: the batches per rank
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(n, 32, generator=g),
                                        torch.randint(0, 10, (n,), generator=g))
    dl = torch.utils.data.DataLoader(ds, batch_size=opts["batch_size"])
    callbacks: list[Any] = [Timer()]
    start: Any = None
    stop: Any = None
    mon: Any = None
    log_every = opts.get("log_every_n_steps", "unset")

    t0 = time.perf_counter()
    if config.startswith("wattwise"):
        from wattwise.lightning import EnergyMonitor

        kwargs: dict[str, Any] = dict(opts.get("wattwise_kwargs") or {})  # ablations
        if log_every != "unset":  # scale.py: step-level logging, every window read
            kwargs.update(log_every_n_steps=log_every, min_window_s=0.0)
        mon = EnergyMonitor(**kwargs)
        callbacks.append(mon)
    elif config == "codecarbon-hand":
        from codecarbon import OfflineEmissionsTracker

        tracker = OfflineEmissionsTracker(country_iso_code="USA", save_to_file=False,
                                          log_level="error")

        class Tasks(L.Callback):
            def on_train_epoch_start(self, trainer: Any, *a: Any) -> None:
                tracker.start_task(f"epoch{trainer.current_epoch}")

            def on_train_epoch_end(self, *a: Any) -> None:
                tracker.stop_task()

        callbacks.append(Tasks())
        start, stop = tracker.start, tracker.stop
    elif config == "carbontracker":
        from carbontracker.tracker import CarbonTracker

        ct = CarbonTracker(epochs=opts["epochs"], components="cpu", verbose=0,
                           log_dir=str(workdir / "carbontracker"))

        class Epochs(L.Callback):
            def on_train_epoch_start(self, *a: Any) -> None:
                ct.epoch_start()

            def on_train_epoch_end(self, *a: Any) -> None:
                ct.epoch_end()

        callbacks.append(Epochs())
        stop = ct.stop
    elif config == "devicestats":
        callbacks.append(L.callbacks.DeviceStatsMonitor(cpu_stats=True))
    elif config != "none":
        raise SystemExit(f"unknown Lightning configuration {config!r}")
    if start is not None:
        start()
    build_s = time.perf_counter() - t0  # the tool's construction and start, kept in fit_s
    trainer_kwargs: dict[str, Any] = {}
    if ddp:
        trainer_kwargs = {"devices": opts["devices"], "strategy": "ddp"}
    trainer = L.Trainer(
        max_epochs=opts["epochs"], accelerator="cpu",
        logger=L.loggers.TensorBoardLogger(str(workdir / "logs")), callbacks=callbacks,
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
        **trainer_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t1 = time.perf_counter()
        clock.t0 = t1 - build_s
        trainer.fit(MLP(), dl)
        if stop is not None:
            stop()
        t2 = time.perf_counter()
    out = result(clock, clock.t0, t2)
    out["rank"] = trainer.global_rank
    if mon is not None:
        out["meters"] = wattwise_meters(mon)
    return out


def run_keras(opts: dict[str, Any], workdir: Path) -> dict[str, Any]:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras
    import numpy as np

    if keras.backend.backend() == "torch":
        import torch

        torch.set_num_threads(1)
    config = opts["config"]
    zone = fake_rapl(workdir) if config == "wattwise-counters" else None
    if config == "wattwise-auto" and opts.get("auto_rapl_root"):
        os.environ["WATTWISE_RAPL_ROOT"] = opts["auto_rapl_root"]
    clock = Clock(zone)

    class Timer(keras.callbacks.Callback):
        def on_train_begin(self, logs: Any = None) -> None:
            clock.tick()

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            clock.epoch_start()

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if clock.first_batch is None:
                clock.batch_start()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            clock.tick()

        def on_train_end(self, logs: Any = None) -> None:
            clock.end()

    keras.utils.set_random_seed(0)
    n = opts["batches"] * opts["batch_size"]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 32), dtype=np.float32)
    y = rng.integers(0, 10, n)
    model = keras.Sequential([
        keras.Input((32,)), keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(32, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callbacks: list[Any] = [Timer()]
    start: Any = None
    stop: Any = None
    mon: Any = None
    t0 = time.perf_counter()
    if config.startswith("wattwise"):
        from wattwise.keras import EnergyMonitor

        mon = EnergyMonitor(**dict(opts.get("wattwise_kwargs") or {}))  # kwargs: ablations
        callbacks.append(mon)
    elif config == "codecarbon-hand":
        from codecarbon import OfflineEmissionsTracker

        tracker = OfflineEmissionsTracker(country_iso_code="USA", save_to_file=False,
                                          log_level="error")

        class Tasks(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                tracker.start_task(f"epoch{epoch}")

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                tracker.stop_task()

        callbacks.append(Tasks())
        start, stop = tracker.start, tracker.stop
    elif config != "none":
        raise SystemExit(f"unknown Keras configuration {config!r}")
    if start is not None:
        start()
    clock.t0 = t0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=opts["batch_size"], epochs=opts["epochs"], verbose=0,
                  callbacks=callbacks, shuffle=False)
        if stop is not None:
            stop()
        t2 = time.perf_counter()
    out = result(clock, t0, t2)
    if mon is not None:
        out["meters"] = wattwise_meters(mon)
    return out


def result(clock: Clock, t0: float, t2: float) -> dict[str, Any]:
    return {
        "fit_s": t2 - t0,
        "start_s": None if clock.first_batch is None else clock.first_batch - t0,
        "epoch_s": clock.epochs(),
    }


#: the modules each configuration needs: a row whose imports fail is skipped, saying why
NEEDS = {
    "lightning": ("torch", "lightning.pytorch|pytorch_lightning"),
    "keras": ("keras",),
    "codecarbon-hand": ("codecarbon",),
    "carbontracker": ("carbontracker",),
    "devicestats": ("psutil",),
}


def missing(opts: dict[str, Any]) -> str | None:
    import importlib

    for key in (opts["framework"], opts["config"]):
        for alternatives in NEEDS.get(key, ()):
            errors = []
            for mod in alternatives.split("|"):
                try:
                    importlib.import_module(mod)
                    break
                except Exception as e:  # noqa: BLE001 - any import failure skips the row
                    errors.append(f"{mod}: {type(e).__name__}: {e}")
            else:
                return f"cannot import {' or '.join(alternatives.split('|'))} ({'; '.join(errors)})"
    return None


def main(argv: list[str]) -> int:
    """``argv[1]``: JSON with ``framework`` (lightning|keras), ``config``, ``epochs``,
    ``batches``, ``batch_size``, optional ``devices`` (Lightning DDP on CPU),
    ``log_every_n_steps`` and ``auto_rapl_root``."""
    opts = json.loads(argv[1])
    if opts["framework"] == "keras":
        os.environ.setdefault("KERAS_BACKEND", "torch")
    why = missing(opts)
    if why is not None:
        print(MARK + json.dumps({"skipped": why}), flush=True)
        return 0
    with tempfile.TemporaryDirectory(prefix="wattwise-peers-") as d:
        os.chdir(d)
        run = run_lightning if opts["framework"] == "lightning" else run_keras
        out = run(opts, Path(d))
    if out.get("rank", 0) == 0:
        print(MARK + json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
