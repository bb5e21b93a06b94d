"""Cost of EnergyTracker's own bookkeeping (no hardware: a FakeMeter), run by hand.

    .venv/bin/python benchmarks/tracker_overhead.py

Prints the per-batch cost of ``add_batch()`` + ``step_reading()`` when no step reading is due
(median of 7 runs of 200,000 batches) and the per-epoch cost on the training thread of a
one-batch epoch, without and with a summary file (rewritten after every epoch by the background
writer), for epochs 0-2,000 and 2,000-4,000 (must not grow with the number of epochs), and how
many epoch records the file holds right after the last epoch and after ``flush()``.
Results are recorded in docs/tracker.md.
"""

from __future__ import annotations

import statistics
import time

from wattwise import EnergyTracker
from wattwise.testing import FakeMeter


def per_batch_ns(repeats: int = 7, batches: int = 200_000) -> float:
    tracker = EnergyTracker([FakeMeter(("gpu:0", "cpu:package-0"))], min_window_s=3600.0)
    tracker.start()
    tracker.start_window("train", 0)
    add, step = tracker.add_batch, tracker.step_reading
    results = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(batches):
            add(32)
            step()
        results.append((time.perf_counter() - t0) / batches * 1e9)
    tracker.finish()
    return statistics.median(results)


def per_epoch_us(tracker: EnergyTracker, first: int, epochs: int) -> float:
    t0 = time.perf_counter()
    for epoch in range(first, first + epochs):
        tracker.start_window("train", epoch)
        tracker.add_batch(32)
        tracker.end_window()
        tracker.end_epoch()
    return (time.perf_counter() - t0) / epochs * 1e6


def main() -> None:
    print(f"add_batch + step_reading, no read due: {per_batch_ns():.0f} ns per batch (median)")
    tracker = EnergyTracker([FakeMeter(("gpu:0",))])
    tracker.start()
    a = per_epoch_us(tracker, 0, 2000)
    b = per_epoch_us(tracker, 2000, 2000)
    tracker.finish()
    print(
        f"one-batch epoch, no summary file: {a:.1f} us/epoch (epochs 0-2k), {b:.1f} us/epoch (2k-4k)"
    )
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "run.json"
        tracker = EnergyTracker([FakeMeter(("gpu:0",))], summary_path=path)
        tracker.start()
        a = per_epoch_us(tracker, 0, 2000)
        b = per_epoch_us(tracker, 2000, 2000)
        on_disk = len(json.loads(path.read_text())["epochs"])
        t0 = time.perf_counter()
        tracker.flush()
        flush_ms = (time.perf_counter() - t0) * 1e3
        after = len(json.loads(path.read_text())["epochs"])
        tracker.finish()
    print(
        f"one-batch epoch, summary file after every epoch: {a:.1f} us/epoch (epochs 0-2k), "
        f"{b:.1f} us/epoch (2k-4k); on disk right after epoch 4,000: {on_disk} epochs, "
        f"after flush() ({flush_ms:.0f} ms): {after}"
    )
    write_volume(epochs=5000, epoch_s=0.003)


def write_volume(epochs: int, epoch_s: float) -> None:
    """Bytes written to the summary file for ``epochs`` one-batch epochs of ``epoch_s`` seconds,
    against the final file size (the background writer writes at most once a second)."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "run.json"
        meter = FakeMeter(("gpu:0",))
        tracker = EnergyTracker([meter], summary_path=path)
        tracker.start()
        writes = [0]
        f = tracker._run.file  # type: ignore[union-attr]  # the benchmark counts its writes
        inner = f._write

        def counted(snap: object) -> None:
            writes[0] += 1
            inner(snap)  # type: ignore[arg-type]

        f._write = counted  # type: ignore[method-assign]
        for epoch in range(epochs):
            tracker.start_window("train", epoch)
            tracker.add_batch(32)
            meter.advance(1.0)
            time.sleep(epoch_s)
            tracker.end_epoch()
        tracker.finish()
        size = path.stat().st_size
        written = f.bytes_written
    print(
        f"summary write volume, {epochs:,} epochs of {epoch_s * 1e3:.0f} ms: {writes[0]} writes, "
        f"{written / 1e6:.1f} MB written for a {size / 1e6:.2f} MB file ({written / size:.1f}x)"
    )


if __name__ == "__main__":
    main()
