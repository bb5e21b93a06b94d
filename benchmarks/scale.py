"""How wattwise's cost grows with the work (run by hand, not in CI).

    PYTHONPATH=src python benchmarks/scale.py [epochs] [steps] [ddp] [--quick] [--json out.json]

Three parts (all by default):

* ``epochs``: the tracker alone (no framework), ``--epochs`` (10,000) one-batch epochs of
  ``--epoch-ms`` (2 ms of sleep standing in for training) with a :class:`~wattwise.testing.
  FakeMeter` and a summary file, as ``EnergyMonitor()`` writes one. Per bucket of a tenth of
  the epochs: the training thread's time in the tracker's calls per epoch (median and 99th
  percentile, so a background write that holds the GIL shows), the summary file's size, and
  the bytes and write calls the process made so far (``/proc/self/io``: ``wchar``,
  ``syscw``; the summary is rewritten by a background writer at most once a second).
* ``steps``: a Lightning fit (benchmarks/peers.py's workload and fresh processes, counters on a
  fake RAPL tree) with ``EnergyMonitor(log_every_n_steps=n, min_window_s=0)`` for n in None,
  100, 10, 1: the steady-epoch cost against no tool, per training step.
* ``ddp``: Lightning DDP, 2 processes on CPU (gloo), with and without ``EnergyMonitor()``
  (counters), next to the same in one process: the per-epoch cost under DDP minus the
  single-process one is what the cross-rank reduction of the epoch records adds.

Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402 - the fresh-process runner, beside this file


def proc_io() -> dict[str, int] | None:
    """This process's ``/proc/self/io`` counters (bytes and calls written, all threads)."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return {k: int(v) for k, v in (line.split(": ") for line in text.splitlines())}


def epochs_part(epochs: int, epoch_s: float, buckets: int = 10) -> list[dict[str, Any]]:
    """Per-bucket tracker cost, summary size and write volume over ``epochs`` epochs."""
    from wattwise.testing import FakeMeter
    from wattwise.tracker import EnergyTracker

    rows: list[dict[str, Any]] = []
    per = max(1, epochs // buckets)
    with tempfile.TemporaryDirectory(prefix="wattwise-scale-") as d:
        path = Path(d) / "wattwise_summary.json"
        meter = FakeMeter(("cpu:package-0",))
        tracker = EnergyTracker([meter], summary_path=path)
        io0 = proc_io()
        tracker.start()
        costs: list[float] = []
        clock = time.perf_counter
        for epoch in range(epochs):
            meter.advance({"cpu:package-0": 0.1})
            t0 = clock()
            tracker.start_window("train", epoch)
            tracker.add_batch(32)
            tracker.end_window()
            tracker.end_epoch()
            costs.append(clock() - t0)
            time.sleep(epoch_s)
            if (epoch + 1) % per == 0 or epoch + 1 == epochs:
                io = proc_io()
                bucket = costs[-per:]
                rows.append({
                    "epochs": epoch + 1,
                    "median_us": 1e6 * statistics.median(bucket),
                    "p99_us": 1e6 * sorted(bucket)[int(0.99 * (len(bucket) - 1))],
                    "max_us": 1e6 * max(bucket),
                    "file_bytes": path.stat().st_size if path.exists() else None,
                    "written_bytes": None if io is None or io0 is None
                    else io["wchar"] - io0["wchar"],
                    "write_calls": None if io is None or io0 is None
                    else io["syscw"] - io0["syscw"],
                })
        t0 = clock()
        tracker.finish()
        finish_s = clock() - t0
        io = proc_io()
        rows.append({"epochs": "finish()", "median_us": 1e6 * finish_s, "p99_us": None,
                     "max_us": None, "file_bytes": path.stat().st_size,
                     "written_bytes": None if io is None or io0 is None
                     else io["wchar"] - io0["wchar"],
                     "write_calls": None if io is None or io0 is None
                     else io["syscw"] - io0["syscw"]})
    return rows


def render_epochs(rows: Sequence[dict[str, Any]]) -> str:
    def mb(v: int | None) -> str:
        return "-" if v is None else f"{v / 1e6:.2f} MB"

    def us(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = ["| epochs done | tracker µs/epoch, median | p99 | max | summary file "
             "| bytes written so far | write calls so far |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        if r["epochs"] == "finish()":  # one call, not per epoch: in ms
            lines.append(f"| finish() | {r['median_us'] / 1e3:.1f} ms (once) | - | - "
                         f"| {mb(r['file_bytes'])} | {mb(r['written_bytes'])} "
                         f"| {r['write_calls'] if r['write_calls'] is not None else '-'} |")
            continue
        lines.append(f"| {r['epochs']} | {us(r['median_us'])} | {us(r['p99_us'])} "
                     f"| {us(r['max_us'])} | {mb(r['file_bytes'])} | {mb(r['written_bytes'])} "
                     f"| {r['write_calls'] if r['write_calls'] is not None else '-'} |")
    return "\n".join(lines)


def step_jobs(python: str) -> list[peers.Job]:
    jobs = [peers.Job("lightning", "none", python)]
    for n in (None, 100, 10, 1):
        jobs.append(peers.Job("lightning", f"wattwise-counters-n{n}", python,
                              extra={"log_every_n_steps": n},
                              label=f"EnergyMonitor(log_every_n_steps={n}, min_window_s=0)"))
    return jobs


def ddp_jobs(python: str) -> list[peers.Job]:
    jobs = []
    for devices, group in ((1, "1 process"), (2, "DDP, 2 processes")):
        for config in ("none", "wattwise-counters"):
            jobs.append(peers.Job("lightning", config, python, extra={"devices": devices},
                                  group=group))
    return jobs


def per_step(rows: Sequence[dict[str, Any]], batches: int) -> list[str]:
    out = []
    for r in rows:
        if r["config"] != "none" and r["steady_epoch_cost_s"] is not None:
            out.append(f"{r['label']}: {1e6 * r['steady_epoch_cost_s'] / batches:+.1f} µs "
                       "per training step")
    return out


def ddp_extra(rows: Sequence[dict[str, Any]]) -> list[str]:
    cost = {r["framework"]: r["steady_epoch_cost_s"] for r in rows
            if r["config"] == "wattwise-counters"}
    one, two = cost.get("1 process"), cost.get("DDP, 2 processes")
    if one is None or two is None:
        return []
    return [f"EnergyMonitor() per-epoch cost: {1e3 * one:+.2f} ms in 1 process, "
            f"{1e3 * two:+.2f} ms under DDP; the cross-rank reduction adds "
            f"{1e3 * (two - one):+.2f} ms per epoch"]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="how wattwise's cost grows with the work")
    p.add_argument("parts", nargs="*", metavar="PART",
                   help="epochs, steps and/or ddp (default: all three)")
    p.add_argument("--epochs", type=int, default=10_000, help="epochs of the tracker part")
    p.add_argument("--epoch-ms", type=float, default=2.0, help="sleep per tracker epoch, ms")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (steps, ddp)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    p.add_argument("--python", default=sys.executable, help="interpreter for the fits")
    p.add_argument("--json", default=None, help="write all results to this file")
    args = p.parse_args(argv)
    parts = args.parts or ["epochs", "steps", "ddp"]
    if set(parts) - {"epochs", "steps", "ddp"}:
        p.error(f"unknown part(s) {sorted(set(parts) - {'epochs', 'steps', 'ddp'})!r}: "
                "expected epochs, steps or ddp")
    if args.quick:
        args.epochs, args.rounds = 200, 1
    doc: dict[str, Any] = {"date": dt.datetime.now(dt.timezone.utc).isoformat(),
                           "machine": peers.machine()}
    cmd = "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    print(f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {peers.machine()}\n"
          f"command: {cmd}")
    if "epochs" in parts:
        rows = epochs_part(args.epochs, args.epoch_ms / 1e3)
        doc["epochs"] = rows
        print(f"\n## {args.epochs:,} tracker epochs of {args.epoch_ms:g} ms, summary file on\n")
        print(render_epochs(rows))
    log = sys.stderr
    if "steps" in parts:
        size = {"epochs": 3, "batches": 10 if args.quick else 200, "batch_size": 256}
        jobs = step_jobs(args.python)
        peers.run_jobs(jobs, rounds=args.rounds, size=size, warmup=not args.quick, log=log)
        rows = peers.aggregate(jobs)
        doc["steps"] = rows
        print(f"\n## step-level logging, Lightning, {size['epochs']} epochs x {size['batches']} "
              f"batches of 256, {args.rounds} rounds\n")
        print(peers.render(rows))
        print("\n" + "\n".join(per_step(rows, size["batches"])))
    if "ddp" in parts:
        size = {"epochs": 3 if args.quick else 10, "batches": 5 if args.quick else 20,
                "batch_size": 256}
        jobs = ddp_jobs(args.python)
        peers.run_jobs(jobs, rounds=args.rounds, size=size, warmup=not args.quick, log=log)
        rows = peers.aggregate(jobs)
        doc["ddp"] = rows
        print(f"\n## DDP on CPU (gloo), {size['epochs']} epochs x {size['batches']} batches of "
              f"256 per rank, {args.rounds} rounds\n")
        print(peers.render(rows))
        print("\n" + "\n".join(ddp_extra(rows)))
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
