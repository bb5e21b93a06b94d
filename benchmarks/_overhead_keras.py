"""Overhead of wattwise's Keras ``EnergyMonitor`` (run by hand, not in CI).

    KERAS_BACKEND=tensorflow python benchmarks/_overhead_keras.py [--rounds 5 --epochs 3 --batches 200]
    python benchmarks/overhead.py --framework keras        # the same, dispatched from overhead.py

A small MLP trains with ``model.fit`` with no callback, with ``EnergyMonitor()`` (default: no
per-batch hook, Keras keeps async batch-callback dispatch) and with step-level logging every step
(``log_every_n_steps=1, min_window_s=0``: a meter read at every batch, the worst case); the
configurations are interleaved round by round. Reported: the median time per training step and
its ratio to no callback, and the time spent inside EnergyMonitor's hooks as a share of training
time (end-to-end ratios on a noisy machine cannot resolve 1 %; the in-hook share can). The
backend is the one ``KERAS_BACKEND`` selects. Meters: a :class:`wattwise.testing.FakeMeter` by
default (``--meters auto`` for the machine's real ones).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from typing import Any

CONFIGS = ("no callback", "EnergyMonitor()", "EnergyMonitor(log_every_n_steps=1)")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows ``{framework, config, median_step_s, ratio, hook_share}`` (see benchmarks/overhead.py)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    from _timing import timed

    from wattwise.keras import EnergyMonitor, _StepEnergyMonitor
    from wattwise.testing import FakeMeter

    # EnergyMonitor keeps no clock of its own: subclasses time its hooks from outside
    hooks = ("on_train_begin", "on_epoch_begin", "on_epoch_end", "on_test_begin", "on_test_end",
             "on_train_end", "on_train_batch_end")

    def timed_own(base: type) -> type:
        # only the hooks the class itself defines: timing an inherited no-op batch hook would
        # make Keras dispatch batch callbacks synchronously, which EnergyMonitor() avoids
        return timed(base, [h for h in hooks if any(h in vars(c) for c in base.__mro__
                                                    if c.__module__.startswith("wattwise"))])

    TimedMonitor, TimedStepMonitor = timed_own(EnergyMonitor), timed_own(_StepEnergyMonitor)

    keras.utils.set_random_seed(0)
    n = args.batches * args.batch_size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 32), dtype=np.float32)
    y = rng.integers(0, 10, n)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.step_s: list[float] = []
            self.train_s = 0.0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            dt = time.perf_counter() - self.t0
            self.train_s += dt
            self.step_s.append(dt / args.batches)

    def meters() -> Any:
        return "auto" if args.meters == "auto" else [FakeMeter(("cpu:package-0",))]

    def fit(config: str) -> tuple[list[float], float | None]:
        model = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                                  keras.layers.Dense(10)])
        model.compile(optimizer=keras.optimizers.SGD(0.01),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        timer = EpochTimer()
        mon = None
        if config == "EnergyMonitor()":
            mon = TimedMonitor(meters(), print_summary=False, advice=False)
        elif config == "EnergyMonitor(log_every_n_steps=1)":
            mon = TimedStepMonitor(meters(), log_every_n_steps=1, min_window_s=0.0,
                                   print_summary=False, advice=False)
        cbs: list[Any] = [timer] + ([mon] if mon is not None else [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
                      callbacks=cbs, shuffle=False)
        share = mon.hook_time_s / timer.train_s if mon is not None else None
        return timer.step_s[1:] or timer.step_s, share  # the first epoch is warm-up (tracing)

    steps: dict[str, list[float]] = {c: [] for c in CONFIGS}
    shares: dict[str, list[float]] = {c: [] for c in CONFIGS}
    for r in range(args.rounds):
        for c in (CONFIGS if r % 2 == 0 else CONFIGS[::-1]):  # interleaved, alternating order
            s, share = fit(c)
            steps[c] += s
            if share is not None:
                shares[c].append(share)
    base = statistics.median(steps["no callback"])
    framework = f"keras-{keras.backend.backend()}"
    return [
        {"framework": framework, "config": c, "median_step_s": statistics.median(steps[c]),
         "ratio": statistics.median(steps[c]) / base,
         "hook_share": statistics.median(shares[c]) if shares[c] else None}
        for c in CONFIGS
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="overhead of wattwise's Keras EnergyMonitor")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3, help="epochs per fit (the first is warm-up)")
    p.add_argument("--batches", type=int, default=200, help="batches per epoch")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--meters", choices=["fake", "auto"], default="fake")
    args = p.parse_args(argv)
    rows = run(args)
    print(f"{'framework':18} {'configuration':38} {'median step':>12} {'ratio':>7} {'in-hook share':>14}")
    for r in rows:
        share = "-" if r["hook_share"] is None else f"{100 * r['hook_share']:.3f} %"
        print(f"{r['framework']:18} {r['config']:38} {1e3 * r['median_step_s']:9.3f} ms "
              f"{r['ratio']:7.3f} {share:>14}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
