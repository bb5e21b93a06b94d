"""Overhead of wattwise's training callbacks (run by hand, not in CI).

    python benchmarks/overhead.py --framework lightning [--rounds 5 --epochs 3 --batches 200]

The same small-MLP training runs with no callback, with ``EnergyMonitor()`` (default), with
step-level logging every step, with codecarbon's ``EmissionsTracker`` around ``fit`` and with
Lightning's ``DeviceStatsMonitor``; configurations are interleaved round by round; the table
gives the median time per training step of each and its ratio to no callback, plus the time
spent inside EnergyMonitor's own hooks as a share of training time (end-to-end ratios on a noisy
machine cannot resolve 1 %; the in-hook share can).

``--framework keras|all`` dispatches to ``benchmarks/_overhead_keras.py`` when that file exists
(it must define ``run(args) -> list[dict]`` with the same row keys as :func:`run_lightning`).
The energy callbacks use a :class:`wattwise.testing.FakeMeter` by default (a counter read as cheap
as RAPL's pread) so the numbers show wattwise's cost, not a meter's; ``--meters auto`` uses the
real default meters of the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any


def run_lightning(args: argparse.Namespace) -> list[dict[str, Any]]:
    import logging

    import lightning.pytorch as L
    import torch
    from _timing import timed

    from wattwise.lightning import EnergyMonitor
    from wattwise.testing import FakeMeter

    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    n = args.batches * args.batch_size
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(n, 32, generator=g), torch.randint(0, 10, (n,), generator=g))

    class MLP(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    timed_hooks = ("on_train_epoch_start", "on_train_batch_start", "on_train_batch_end",
                   "on_train_epoch_end", "on_validation_start", "on_validation_epoch_start",
                   "on_validation_batch_end", "on_validation_epoch_end")

    # EnergyMonitor keeps no clock of its own in its hooks (that would cost on every batch);
    # a subclass times them from outside. The same wrapper around Lightning's empty Callback
    # hooks ("timing probe") measures what the wrapper itself costs in the training loop
    # (clock reads, an extra call, cold caches); the table's "net" column subtracts it.
    TimedEnergyMonitor = timed(EnergyMonitor, timed_hooks)
    TimingProbe = timed(L.Callback, timed_hooks)

    class EpochTimer(L.Callback):
        def __init__(self) -> None:
            self.step_s: list[float] = []
            self.train_s = 0.0  # training time after the warm-up epoch
            self.mon: Any = None
            self.hook_s_at_warm = 0.0

        def on_train_epoch_start(self, trainer: Any, *a: Any) -> None:
            # runs before EnergyMonitor's hooks of this epoch and after all of the previous
            # epoch's: hook time from here on excludes the warm-up epoch and start-up costs
            if trainer.current_epoch == 1 and self.mon is not None:
                self.hook_s_at_warm = self.mon.hook_time_s
            self.t0 = time.perf_counter()

        def on_train_epoch_end(self, trainer: Any, *a: Any) -> None:
            dt = time.perf_counter() - self.t0
            if trainer.current_epoch >= 1:
                self.train_s += dt
            self.step_s.append(dt / args.batches)

    def make_logger() -> Any:
        if args.logger == "csv":  # rewrites its whole file every 100 steps (Lightning's I/O)
            return L.loggers.CSVLogger(args.log_dir)
        return L.loggers.TensorBoardLogger(args.log_dir)

    def meters() -> Any:
        return "auto" if args.meters == "auto" else [FakeMeter(("cpu:package-0",))]

    def fit(config: str) -> tuple[list[float], float | None]:
        timer = EpochTimer()
        cbs: list[Any] = [timer]
        mon = None
        if config == "EnergyMonitor()":
            mon = TimedEnergyMonitor(meters=meters(), print_summary=False, advice=False)
        elif config == "EnergyMonitor(log_every_n_steps=1)":
            mon = TimedEnergyMonitor(meters=meters(), log_every_n_steps=1, print_summary=False,
                                     advice=False)
        elif config == "timing probe (empty hooks)":
            mon = TimingProbe()
        elif config == "DeviceStatsMonitor":
            cbs.append(L.callbacks.DeviceStatsMonitor())
        if mon is not None:
            cbs.append(mon)
            timer.mon = mon
        trainer = L.Trainer(
            max_epochs=args.epochs, accelerator="cpu", logger=make_logger(),
            enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            callbacks=cbs, log_every_n_steps=50,
        )
        dl = torch.utils.data.DataLoader(ds, batch_size=args.batch_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if config == "codecarbon EmissionsTracker":
                from codecarbon import OfflineEmissionsTracker

                tracker = OfflineEmissionsTracker(
                    country_iso_code="USA", save_to_file=False, log_level="error")
                tracker.start()
                try:
                    trainer.fit(MLP(), dl)
                finally:
                    tracker.stop()
            else:
                trainer.fit(MLP(), dl)
        share = None
        if mon is not None and timer.train_s > 0:  # epochs after the warm-up one
            share = (mon.hook_time_s - timer.hook_s_at_warm) / timer.train_s
        return timer.step_s[1:] or timer.step_s, share  # first epoch is warm-up

    configs = ["no callback", "timing probe (empty hooks)", "EnergyMonitor()",
               "EnergyMonitor(log_every_n_steps=1)", "codecarbon EmissionsTracker",
               "DeviceStatsMonitor"]
    steps: dict[str, list[float]] = {c: [] for c in configs}
    shares: dict[str, list[float]] = {c: [] for c in configs}
    for r in range(args.rounds):
        for c in (configs if r % 2 == 0 else configs[::-1]):  # interleaved, alternating order
            s, share = fit(c)
            steps[c] += s
            if share is not None:
                shares[c].append(share)
    base = statistics.median(steps["no callback"])
    probe = statistics.median(shares["timing probe (empty hooks)"])
    rows = []
    for c in configs:
        med = statistics.median(steps[c])
        share = statistics.median(shares[c]) if shares[c] else None
        net = share - probe if share is not None and c.startswith("EnergyMonitor") else None
        rows.append({
            "framework": "lightning", "config": c, "median_step_s": med, "ratio": med / base,
            "hook_share": share, "net_hook_share": net,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="overhead of wattwise callbacks")
    p.add_argument("--framework", choices=["lightning", "keras", "all"], default="all")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3, help="epochs per fit (the first is warm-up)")
    p.add_argument("--batches", type=int, default=200, help="batches per epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--meters", choices=["fake", "auto"], default="fake")
    p.add_argument("--log-dir", default=str(Path("/tmp") / "wattwise_overhead_logs"))
    p.add_argument("--logger", choices=["tensorboard", "csv"], default="tensorboard",
                   help="the Lightning logger every configuration uses (the callback's epoch "
                   "metrics go through it, so its write cost lands in the in-hook share)")
    args = p.parse_args(argv)
    rows: list[dict[str, Any]] = []
    if args.framework in ("lightning", "all"):
        rows += run_lightning(args)
    if args.framework in ("keras", "all"):
        path = Path(__file__).with_name("_overhead_keras.py")
        if path.exists():
            spec = importlib.util.spec_from_file_location("_overhead_keras", path)
            assert spec is not None and spec.loader is not None
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            rows += mod.run(args)
        elif args.framework == "keras":
            print("benchmarks/_overhead_keras.py is not there yet", file=sys.stderr)
            return 2
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.3f} %"

    print(f"{'framework':10} {'configuration':38} {'median step':>12} {'ratio':>7} "
          f"{'in-hook share':>14} {'net of probe':>13}")
    for r in rows:
        print(f"{r['framework']:10} {r['config']:38} {1e3 * r['median_step_s']:9.3f} ms "
              f"{r['ratio']:7.3f} {pct(r['hook_share']):>14} {pct(r.get('net_hook_share')):>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
