"""wattwise next to its peers: the cost each energy tool adds to a short fit (run by hand).

    PYTHONPATH=src python benchmarks/peers.py --rounds 5 [--framework lightning|keras|both]
        [--python PY] [--keras-python PY] [--json out.json]

The workload is an MLP 32-32-32-10, 3 epochs x 200 batches of 256, one torch thread; a
Lightning fit logs to ``TensorBoardLogger``, a Keras fit (torch backend) has no logger. Each
configuration runs as a fresh process (``benchmarks/_peers_child.py``), configurations
interleaved round by round, after one untimed warm-up process each (warm bytecode and page
cache; ``PYTHONDONTWRITEBYTECODE`` is unset for the children):

* Lightning (``--python``): ``none``; ``wattwise-counters``: ``EnergyMonitor()`` over a fake
  RAPL powercap tree (the counter path); ``wattwise-auto``: ``EnergyMonitor()`` on this machine
  as it is (on a machine without GPU or readable RAPL, the codecarbon estimate);
  ``codecarbon-hand``: codecarbon's ``OfflineEmissionsTracker`` started before ``fit``, a task
  per epoch from a callback, stopped after; ``carbontracker``: ``CarbonTracker`` with
  ``epoch_start``/``epoch_end`` from a callback; ``devicestats``: Lightning's
  ``DeviceStatsMonitor(cpu_stats=True)``.
* Keras (``--keras-python``): ``none``, ``wattwise-counters``, ``wattwise-auto``,
  ``codecarbon-hand``.

A row whose packages do not import under its interpreter is skipped, and the table says why.
Columns: median and minimum fit time (the tool's construction and start, ``fit``, its stop),
slowdown (median fit / median fit of ``none`` - 1), paired slowdown (the median over rounds of
each fit over the same round's ``none`` fit, minus 1: robust to the machine's slow spells),
start latency (that start to the first
training batch, median) and the steady-epoch cost (median over epochs 2..n of each fit, then
over fits, minus ``none``'s). See benchmarks/_peers_child.py for what is timed where, and
docs/benchmarks.md for recorded runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHILD = HERE / "_peers_child.py"
MARK = "PEERS_RESULT "
LIGHTNING_CONFIGS = ("none", "wattwise-counters", "wattwise-auto", "codecarbon-hand",
                     "carbontracker", "devicestats")
KERAS_CONFIGS = ("none", "wattwise-counters", "wattwise-auto", "codecarbon-hand")
LABELS = {
    "none": "no energy tool",
    "wattwise-counters": "wattwise EnergyMonitor(), counters (fake RAPL)",
    "wattwise-auto": "wattwise EnergyMonitor(), auto",
    "codecarbon-hand": "codecarbon OfflineEmissionsTracker, a task per epoch, by hand",
    "carbontracker": "carbontracker CarbonTracker, epoch_start/epoch_end",
    "devicestats": "Lightning DeviceStatsMonitor(cpu_stats=True)",
}
#: the done-when targets of issue 13: the slowdown of the 1 s fit, at most
TARGETS = {"wattwise-counters": 0.03, "wattwise-auto": 0.15}
CHILD_TIMEOUT_S = 600


@dataclass
class Job:
    """One configuration of one framework: its runs, or why it was skipped."""

    framework: str
    config: str
    python: str
    extra: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    group: str = ""  # the table's framework column and baseline group (default: framework)
    runs: list[dict[str, Any]] = field(default_factory=list)
    skipped: str | None = None

    @property
    def name(self) -> str:
        return self.label or LABELS.get(self.config, self.config)


def child_env(framework: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # warm bytecode, as a user's second run has
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if framework == "keras":
        env["KERAS_BACKEND"] = "torch"
    return env


def run_child(job: Job, size: dict[str, Any]) -> dict[str, Any]:
    """One fresh process; its result dict, ``{"skipped": why}`` or ``{"failed": why}``."""
    opts = {"framework": job.framework, "config": job.config, **size, **job.extra}
    try:
        proc = subprocess.run([job.python, str(CHILD), json.dumps(opts)], env=child_env(job.framework),
                              capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"failed": f"{type(e).__name__}: {e}"}
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return dict(json.loads(line[len(MARK):]))
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return {"failed": f"exit {proc.returncode}: " + " | ".join(tail)}


def run_jobs(jobs: Sequence[Job], *, rounds: int, size: dict[str, Any], warmup: bool = True,
             log: Any = None) -> None:
    """Warm-up (one process per configuration, untimed), then ``rounds`` interleaved rounds,
    the order reversed every other round; fills ``job.runs`` / ``job.skipped``."""
    def say(msg: str) -> None:
        if log is not None:
            print(msg, file=log, flush=True)

    warm = {**size, "batches": min(size["batches"], 10)}
    for job in jobs if warmup else ():
        out = run_child(job, warm)
        why = out.get("skipped") or out.get("failed")
        if why:
            job.skipped = str(why)
            say(f"  {job.framework} {job.config}: skipped ({why})")
    live = [j for j in jobs if j.skipped is None]
    for r in range(rounds):
        for job in live if r % 2 == 0 else live[::-1]:
            if job.skipped is not None:
                continue
            out = run_child(job, size)
            if "failed" in out or "skipped" in out:
                job.skipped = str(out.get("failed") or out.get("skipped"))
                say(f"  {job.framework} {job.config}: {job.skipped}")
                continue
            out["round"] = r
            job.runs.append(out)
            say(f"  round {r + 1}: {job.framework} {job.config} fit {out['fit_s']:.3f} s")


def _median(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if vals else None


def steady_epoch_s(run: dict[str, Any]) -> float | None:
    """The median of a fit's epochs 2..n (all of them when it has fewer than 2)."""
    epochs = run.get("epoch_s") or []
    return _median(epochs[1:] or epochs)


def aggregate(jobs: Sequence[Job], baseline: str = "none") -> list[dict[str, Any]]:
    """One row per job: median/min fit, slowdown vs the framework's ``baseline`` (median-based),
    start latency, steady epoch and its cost vs the baseline; ``None`` where not measured."""
    rows: list[dict[str, Any]] = []
    base: dict[str, dict[str, Any]] = {}
    job_runs: dict[int, list[dict[str, Any]]] = {}
    base_runs: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        fits = [r["fit_s"] for r in job.runs]
        row: dict[str, Any] = {
            "framework": job.group or job.framework, "config": job.config, "label": job.name,
            "runs": len(fits), "skipped": job.skipped,
            "median_fit_s": _median(fits), "min_fit_s": min(fits) if fits else None,
            "start_s": _median([r.get("start_s") for r in job.runs]),
            "steady_epoch_s": _median([steady_epoch_s(r) for r in job.runs]),
            "meters": next((r["meters"] for r in job.runs if r.get("meters")), None),
        }
        if job.config == baseline:
            base[row["framework"]] = row
            base_runs[row["framework"]] = job.runs
        job_runs[id(row)] = job.runs
        rows.append(row)
    for row in rows:
        b = base.get(row["framework"])
        row["slowdown"] = row["steady_epoch_cost_s"] = row["paired_slowdown"] = None
        if b is None or not row["runs"] or not b["runs"]:
            continue
        row["slowdown"] = row["median_fit_s"] / b["median_fit_s"] - 1
        row["paired_slowdown"] = paired_slowdown(job_runs[id(row)], base_runs[row["framework"]])
        if row["steady_epoch_s"] is not None and b["steady_epoch_s"] is not None:
            row["steady_epoch_cost_s"] = row["steady_epoch_s"] - b["steady_epoch_s"]
    return rows


def paired_slowdown(runs: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]]) -> float | None:
    """The median over rounds of (this fit / the baseline's fit of the same round) - 1.

    Rounds run the configurations back to back, so a round's baseline fit shares the
    machine's slow spells more often than the median of all baseline fits does (on the
    development VM a slow spell lasts seconds: every epoch of a fit slows together); the
    unpaired ``slowdown`` column is the done-when's measure, this one its check."""
    by_round = {r.get("round"): r["fit_s"] for r in base if r.get("round") is not None}
    ratios = [r["fit_s"] / by_round[r["round"]] for r in runs
              if r.get("round") in by_round and by_round[r["round"]] > 0]
    return statistics.median(ratios) - 1 if ratios else None


def _ms(v: float | None, signed: bool = False) -> str:
    return "-" if v is None else (f"{1e3 * v:+.1f} ms" if signed else f"{1e3 * v:.1f} ms")


def render(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of :func:`aggregate`'s rows."""
    lines = ["| framework | configuration | runs | median fit | min fit | fit slowdown "
             "| paired slowdown | fit start -> first batch | steady epoch | steady-epoch cost "
             "| meters |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if not r["runs"]:
            lines.append(f"| {r['framework']} | {r['label']} | 0 | skipped: "
                         f"{(r['skipped'] or 'no runs').replace('|', '/')} | | | | | | | |")
            continue
        slow = "-" if r["slowdown"] is None else f"{100 * r['slowdown']:+.1f} %"
        paired = r.get("paired_slowdown")
        pair = "-" if paired is None else f"{100 * paired:+.1f} %"
        cost = r["steady_epoch_cost_s"]
        epoch = r["steady_epoch_s"]
        pct = "" if cost is None or epoch is None or epoch == cost else (
            f" ({100 * cost / (epoch - cost):+.1f} %)")
        lines.append(
            f"| {r['framework']} | {r['label']} | {r['runs']} | {r['median_fit_s']:.3f} s "
            f"| {r['min_fit_s']:.3f} s | {slow} | {pair} | {_ms(r['start_s'])} | {_ms(epoch)} "
            f"| {_ms(cost, True)}{pct} | {r['meters'] or ''} |")
    return "\n".join(lines)


def verdicts(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The issue's done-when lines: wattwise's slowdowns against their targets, next to
    codecarbon by hand in the same run."""
    out = []
    for fw in dict.fromkeys(r["framework"] for r in rows):
        by = {r["config"]: r for r in rows if r["framework"] == fw}
        hand = by.get("codecarbon-hand", {}).get("slowdown")
        for config, limit in TARGETS.items():
            s = by.get(config, {}).get("slowdown")
            if s is None:
                continue
            ref = "" if hand is None else f"; codecarbon by hand: {100 * hand:+.1f} %"
            ok = "met" if s <= limit else "NOT met"
            p = by[config].get("paired_slowdown")
            pair = "" if p is None else f"; paired by round: {100 * p:+.1f} %"
            out.append(f"{fw} {config}: fit slowdown {100 * s:+.1f} % (target <= "
                       f"{100 * limit:.0f} %: {ok}){pair}{ref}")
    return out


def machine() -> str:
    return (f"{platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"{platform.system()} {platform.release()}, Python {platform.python_version()}")


def build_jobs(args: argparse.Namespace) -> list[Job]:
    jobs: list[Job] = []
    wanted = set(args.configs.split(",")) if args.configs else None
    if args.framework in ("lightning", "both"):
        jobs += [Job("lightning", c, args.python) for c in LIGHTNING_CONFIGS]
    if args.framework in ("keras", "both"):
        jobs += [Job("keras", c, args.keras_python) for c in KERAS_CONFIGS]
    return [j for j in jobs if wanted is None or j.config in wanted]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="wattwise's cost next to other energy tools")
    p.add_argument("--framework", choices=["lightning", "keras", "both"], default="both")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batches", type=int, default=200, help="batches per epoch")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--quick", action="store_true", help="10 batches per epoch (the smoke test)")
    p.add_argument("--no-warmup", action="store_true", help="skip the warm-up processes")
    p.add_argument("--configs", default="", help="comma-separated subset, e.g. none,wattwise-auto")
    p.add_argument("--python", default=sys.executable, help="interpreter for the Lightning rows")
    p.add_argument("--keras-python", default=sys.executable,
                   help="interpreter for the Keras rows (torch backend)")
    p.add_argument("--json", default=None, help="write rows and raw runs here ('-': stdout)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    args = p.parse_args(argv)
    if args.quick:
        args.batches = 10
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    jobs = build_jobs(args)
    size = {"epochs": args.epochs, "batches": args.batches, "batch_size": args.batch_size}
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    run_jobs(jobs, rounds=args.rounds, size=size, warmup=not args.no_warmup,
             log=None if args.quiet else sys.stderr)
    rows = aggregate(jobs)
    cmd = "python benchmarks/peers.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = "\n".join([
        f"{started:%Y-%m-%d %H:%M} UTC, {machine()}; {args.rounds} interleaved rounds, "
        f"{args.epochs} epochs x {args.batches} batches of {args.batch_size}, "
        f"took {time.perf_counter() - t0:.0f} s",
        f"command: {cmd}", "", render(rows), "", *verdicts(rows)])
    if args.json != "-":
        print(text)
    if args.json:
        doc = {"date": started.isoformat(), "machine": machine(), "command": cmd,
               "size": size, "rounds": args.rounds, "rows": rows,
               "runs": {f"{j.framework}/{j.config}": j.runs for j in jobs}}
        data = json.dumps(doc, indent=1)
        if args.json == "-":
            print(data)
        else:
            Path(args.json).write_text(data + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
