"""Where EnergyMonitor's time goes inside a Lightning fit (run by hand, not in CI).

    python benchmarks/lightning_hooks.py [--epochs 6 --batches 200]

Wraps the callback's hooks and inner steps with a clock during a real ``fit`` of a small MLP
(32-64-10, batches of 32, TensorBoardLogger, FakeMeter) and prints, per part, the median cost
per call and the cost per epoch (epochs after the first). The wrapper's own clock reads (~0.5 us
a call) are included, so the per-batch figure is an upper bound.
"""

from __future__ import annotations

import argparse
import collections
import logging
import statistics
import sys
import tempfile
import time
import warnings
from typing import Any


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batches", type=int, default=200)
    args = p.parse_args(argv)

    import lightning.pytorch as L
    import torch

    from wattwise.lightning import EnergyMonitor
    from wattwise.testing import FakeMeter

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    n = args.batches * 32
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(n, 32, generator=g),
                                        torch.randint(0, 10, (n,), generator=g))

    class MLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                           torch.nn.Linear(64, 10))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    # the callback's hooks, and (tracker.*) what they call on the EnergyTracker
    parts = ["on_train_epoch_start", "on_train_batch_end", "on_train_epoch_end", "_log_record",
             "tracker.count_batch", "tracker.start_window", "tracker.end_epoch", "tracker._write"]
    calls: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
    epoch = [0]

    def timed(name: str, fn: Any) -> Any:
        def wrapper(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                calls[name].append((epoch[0], time.perf_counter() - t0))
        return wrapper

    starts: list[float] = []

    class EpochCounter(L.Callback):
        def on_train_epoch_start(self, trainer: Any, *a: Any) -> None:
            epoch[0] = trainer.current_epoch
            starts.append(time.perf_counter())

        def on_train_end(self, *a: Any) -> None:
            starts.append(time.perf_counter())

    mon = EnergyMonitor([FakeMeter(("cpu:package-0",))], advice=False, print_summary=False)
    for name in parts:
        owner, attr = (mon.tracker, name[8:]) if name.startswith("tracker.") else (mon, name)
        setattr(owner, attr, timed(name, getattr(owner, attr)))
    trainer = L.Trainer(max_epochs=args.epochs, callbacks=[EpochCounter(), mon],
                        logger=L.loggers.TensorBoardLogger(tempfile.mkdtemp()),
                        enable_progress_bar=False, enable_checkpointing=False,
                        enable_model_summary=False, log_every_n_steps=50)
    trainer.fit(MLP(), torch.utils.data.DataLoader(ds, batch_size=32))
    epoch_s = statistics.median(b - a for a, b in zip(starts[1:-1], starts[2:]))
    print(f"{'part':24} {'calls':>6} {'median/call':>12} {'per epoch':>11}")
    for name in parts:
        rows = [dt for e, dt in calls[name] if e > 0] or [0.0]
        per_epoch = sum(rows) / max(1, args.epochs - 1)
        print(f"{name:24} {len(rows):6d} {1e6 * statistics.median(rows):9.1f} us "
              f"{1e6 * per_epoch:8.0f} us")
    print(f"(median epoch of {args.batches} batches, hooks included: {1e3 * epoch_s:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
