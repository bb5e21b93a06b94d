"""The transformers EnergyMonitor's cost per optimizer step (``on_step_end``), without meters.

    PYTHONPATH=src python benchmarks/hf_step_overhead.py

A FakeMeter and an open train window; the hook counts the step's samples (no meter read, no
clock). Prints the median of 7 repeats.
"""

from __future__ import annotations

import statistics
import timeit
from types import SimpleNamespace

from wattwise.hf_data import BatchPlan
from wattwise.testing import FakeMeter
from wattwise.transformers import EnergyMonitor


def main() -> None:
    monitor = EnergyMonitor(meters=[FakeMeter()], print_summary=False, advice=False,
                            summary_path=None)
    monitor.tracker.start()
    monitor.tracker.start_window("train", 0)
    monitor._train_plan = BatchPlan(8)
    args = SimpleNamespace(gradient_accumulation_steps=1)
    state, control = SimpleNamespace(epoch=0.5), SimpleNamespace(should_evaluate=False)
    n = 200_000
    times = [timeit.timeit(lambda: monitor.on_step_end(args, state, control), number=n) / n * 1e9
             for _ in range(7)]
    print(f"on_step_end: median {statistics.median(times):.0f} ns per optimizer step "
          f"(min {min(times):.0f}, max {max(times):.0f}; 7 x {n:,})")
    monitor.tracker.finish()


if __name__ == "__main__":
    main()
