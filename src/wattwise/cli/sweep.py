"""``wattwise sweep``: the paper's cache-knee experiment on this machine.

Trains a BUTTER-shaped MLP on the bundled digits at a range of sizes (parameter counts, NTP) -
or, with ``--batch-sizes``, one network at a range of batch sizes - a few epochs each, and
measures joules per training sample with the available meters (seconds per sample when only
estimates exist). One untimed warm-up run comes first; every point is repeated (``--repeats``,
interleaved across points, not back to back) and reported as the median with its spread
(min..max). Writes one run summary per run (input for ``wattwise fit`` and
``wattwise calibrate``), a ``sweep.json`` index, a plot of cost per sample and cost per sample
per parameter with this machine's cache boundaries, and a table of measured knees against the
model's boundaries.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from wattwise.cli._common import (
    CLIError,
    add_subcommand,
    add_training_options,
    check_int_range,
    check_output_file,
    check_training_args,
    make_out_dir,
    meters_arg,
)
from wattwise.console import UNKNOWN
from wattwise.model.shapes import SHAPES as MODEL_SHAPES

EPILOG = """\
examples:
  wattwise sweep                                         # 6 sizes from 2^10 to 2^17, 3 repeats
  wattwise sweep --sizes 1024 4096 16384 --epochs 1 --repeats 5
  wattwise sweep --min-size 1000 --max-size 1000000 --points 12 --plot knee.png
  wattwise sweep --batch-sizes 8 16 32 64 128 256 --sizes 26122   # batch size at a fixed model
  wattwise sweep --shape trapezoid --depth 5 --out runs/sweep1
  wattwise fit runs/sweep1/size-*.json --out coefficients.json   # refit the model to them
"""

SHAPES = tuple(s for s in MODEL_SHAPES if s != "rectangle_residual")  # the demo MLP has no skips
MAX_SIZE = 10**9


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand."""
    p = add_subcommand(
        subparsers,
        "sweep",
        help="train a BUTTER-shaped MLP at several sizes; J/sample against NTP and the caches",
        description=(
            "Trains a BUTTER-shaped MLP on scikit-learn's bundled digits at a range of sizes "
            "(number of trainable parameters, NTP) - or one size at a range of batch sizes - "
            "a few epochs each, and measures joules per training sample with the available "
            "meters. When only estimates exist it reports seconds per sample instead, and says "
            "so. An untimed warm-up run comes first; each point is repeated, interleaved, and "
            "reported as median and spread. Writes one run summary per run (they feed "
            "`wattwise fit`), plots cost per sample and per parameter with this machine's "
            "cache boundaries, and prints each boundary's measured knee (if any rises above "
            "the spread)."
        ),
        epilog=EPILOG,
    )
    p.add_argument("--framework", default="lightning", metavar="NAME",
                   help="training framework (lightning, the only one supported by sweep)")
    p.add_argument("--sizes", nargs="+", type=int, default=None, metavar="NTP",
                   help="target sizes (number of trainable parameters); with --batch-sizes, "
                        "one size (default 26122, the demo's MLP)")
    p.add_argument("--min-size", type=int, default=2**10, metavar="NTP",
                   help="smallest target size (default 1024)")
    p.add_argument("--max-size", type=int, default=2**17, metavar="NTP",
                   help="largest target size (default 131072)")
    p.add_argument("--points", type=int, default=6, metavar="N",
                   help="number of sizes, log-spaced between --min-size and --max-size (default 6)")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=None, metavar="B",
                   help="sweep these batch sizes at one fixed network size instead of sizes")
    p.add_argument("--repeats", type=int, default=3, metavar="N",
                   help="runs per point, interleaved across points (default 3, at least 1)")
    p.add_argument("--shape", default="rectangle", metavar="SHAPE",
                   help=f"network shape: {', '.join(SHAPES)} (default rectangle)")
    p.add_argument("--depth", type=int, default=3, metavar="D",
                   help="number of Dense layers including the output (default 3)")
    p.add_argument("--epochs", type=int, default=2, metavar="N", help="epochs per run (default 2)")
    add_training_options(p, "sweep")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="plot file (default <out>/sweep.png)")
    p.set_defaults(func=run)


def target_sizes(args: argparse.Namespace) -> list[int]:
    """The target sizes: ``--sizes`` as given, or log-spaced from ``--min-size`` to ``--max-size``."""
    from wattwise.model.curves import log_spaced

    if args.sizes:
        bad = [s for s in args.sizes if not 1 <= s <= MAX_SIZE]
        if bad:
            raise CLIError(f"--sizes: {bad[0]!r} is not a size in 1..{MAX_SIZE} (parameters)")
        return sorted(set(args.sizes))
    check_int_range("--min-size", args.min_size, 1, MAX_SIZE)
    check_int_range("--max-size", args.max_size, args.min_size, MAX_SIZE, " (at least --min-size)")
    check_int_range("--points", args.points, 1, 100)
    return log_spaced(args.min_size, args.max_size, args.points)


def network_widths(shape: str, depth: int, size: int, n_in: int, n_out: int) -> list[int]:
    """BUTTER widths for a target size (:func:`wattwise.model.shapes.network_widths`)."""
    from wattwise.errors import ConfigurationError
    from wattwise.model.shapes import network_widths as widths_for

    try:
        return widths_for(shape, depth, size, n_in, n_out)
    except ConfigurationError as e:
        raise CLIError(f"--shape {shape!r} / --depth {depth!r}: {e}") from None


def _train_totals(summary: dict[str, Any]) -> dict[str, Any]:
    from wattwise.report import report_rows

    tot = {r.phase: r for r in report_rows(summary) if r.epoch is None}
    tr = tot.get("train")
    if tr is None:
        return {"joules": None, "joules_per_sample": None, "seconds": None, "samples": None,
                "seconds_per_sample": None, "estimated": None, "batches": None}
    sps = (tr.seconds / tr.samples) if (tr.seconds is not None and tr.samples) else None
    batches = ((summary.get("totals") or {}).get("phases") or {}).get("train", {}).get("batches")
    return {"joules": tr.joules, "joules_per_sample": tr.joules_per_sample,
            "seconds": tr.seconds, "samples": tr.samples, "seconds_per_sample": sps,
            "estimated": tr.estimated, "batches": batches}


def plan_points(args: argparse.Namespace, n_in: int, n_out: int) -> list[dict[str, Any]]:
    """The sweep's points: ``{"target_size", "widths", "ntp", "batch_size"}`` each, in order of
    the swept quantity (NTP, or batch size with ``--batch-sizes``)."""
    from wattwise.model.shapes import ntp

    if args.batch_sizes:
        bad = [b for b in args.batch_sizes if not 1 <= b <= 100_000]
        if bad:
            raise CLIError(f"--batch-sizes: {bad[0]!r} is not a batch size in 1..100000")
        sizes = args.sizes or [26122]
        if len(sizes) != 1:
            raise CLIError(f"--sizes {' '.join(map(str, sizes))}: with --batch-sizes give one size")
        widths = network_widths(args.shape, args.depth, sizes[0], n_in, n_out)
        return [{"target_size": sizes[0], "widths": widths, "ntp": ntp(n_in, widths),
                 "batch_size": b} for b in sorted(set(args.batch_sizes))]
    plan = []
    for size in target_sizes(args):
        widths = network_widths(args.shape, args.depth, size, n_in, n_out)
        plan.append({"target_size": size, "widths": widths, "ntp": ntp(n_in, widths),
                     "batch_size": args.batch_size})
    return plan


def run(args: argparse.Namespace) -> int:
    from wattwise.datasets import load_digits

    if args.framework != "lightning":
        raise CLIError(f"--framework {args.framework!r}: sweep supports lightning only")
    check_training_args(args, max_epochs=1000)
    if args.shape not in SHAPES:
        raise CLIError(f"--shape {args.shape!r}: choose from {', '.join(SHAPES)}")
    check_int_range("--depth", args.depth, 2, 20)
    check_int_range("--repeats", args.repeats, 1, 100)
    meters_arg(args.meters, args.rapl_root)  # check the names before any work
    if args.plot is not None:  # before any training, not after all of it
        check_output_file("--plot", args.plot, plot=True)
    data = load_digits(seed=args.seed)
    plan = plan_points(args, data.n_features, data.n_classes)
    out = make_out_dir(args.out, "sweep")
    swept = "batch_size" if args.batch_sizes else "ntp"
    what = (f"{len(plan)} batch size(s) at NTP {plan[0]['ntp']}" if swept == "batch_size"
            else f"{len(plan)} size(s), batch size {args.batch_size}")
    print(f"wattwise sweep: {what}, {args.shape} depth {args.depth}, {args.epochs} epoch(s) "
          f"per run, {args.repeats} repeat(s) interleaved after 1 warm-up run, on scikit-learn's "
          f"digits ({len(data.y_train)} train samples); meters={' '.join(args.meters)}; "
          f"output in {out}", flush=True)
    points = measure(plan, data=data, epochs=args.epochs, repeats=args.repeats,
                     meters=lambda: meters_arg(args.meters, args.rapl_root), out=out,
                     seed=args.seed, run_prefix=f"sweep-{args.shape}", command="sweep")
    index = sweep_index(data, points, shape=args.shape, depth=args.depth, epochs=args.epochs,
                        batch_size=args.batch_size, repeats=args.repeats, swept=swept)
    hierarchy = _hierarchy()
    index["knees"] = knee_rows(index, hierarchy) if hierarchy is not None else []
    (out / "sweep.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    print(format_sweep(index))
    print()
    print(format_knees(index, hierarchy))
    plot_path = Path(args.plot) if args.plot else out / "sweep.png"
    note = plot_sweep(index, plot_path, hierarchy)
    n_runs = sum(len(p["runs"]) for p in points)
    print(f"\nwrote {n_runs} run summaries and sweep.json to {out}")
    print(f"wrote plot to {plot_path}" + (f" ({note})" if note else ""))
    print(f"refit the energy model to these runs: wattwise fit {out}/size-*.json "
          f"--out {out}/coefficients.json")
    return 0


# --------------------------------------------------------------------------------------------
# measuring


@contextmanager
def warnings_once(command: str) -> Iterator[None]:
    """Show each distinct warning raised inside once (``wattwise <command>: warning: ...``),
    however many runs raise it."""
    seen: set[tuple[type[Warning], str]] = set()

    def show(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
        key = (category, str(message))
        if key not in seen:
            seen.add(key)
            print(f"wattwise {command}: warning: {message}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        # the filters stay as they are ("always" would format a framework's per-batch
        # deprecation warning on every batch); only the display is deduplicated
        warnings.showwarning = show  # restored by catch_warnings
        yield


def measure(plan: Sequence[dict[str, Any]], *, data: Any, epochs: int, repeats: int,
            meters: Callable[[], Any], out: Path, seed: int, run_prefix: str,
            command: str, warmup: bool = True, as_demo: bool = False) -> list[dict[str, Any]]:
    """Train every planned point ``repeats`` times and aggregate.

    One warm-up run (the first point, one epoch, not recorded) comes first; then every point
    once, in order, and again for each repeat, so that no point's repeats run back to back
    (with two points or more) and a drift of the machine spreads over all points. ``meters()`` gives fresh meters
    per run (the callback closes them). Each point gets ``runs`` (the train totals of every
    run) and the median and min..max of ``joules_per_sample`` and ``seconds_per_sample``.
    With ``as_demo`` every run trains as ``wattwise demo`` does (TensorBoard logging under
    ``out/tensorboard``, the callbacks' sizing check), so that a calibration sees the demo's
    per-step costs.
    """
    from wattwise.cli.demo import train_lightning
    from wattwise.report import load_summary

    runs: list[list[dict[str, Any]]] = [[] for _ in plan]
    order = [(r, i) for r in range(repeats) for i in range(len(plan))]
    total = len(order) + (1 if warmup else 0)
    t_start = time.monotonic()
    done = 0
    with warnings_once(command), _newline_on_error():
        if as_demo:  # the sizing check's verdict is not news here (the demo hides it too)
            from wattwise.errors import SizingWarning

            warnings.simplefilter("ignore", SizingWarning)
        if warmup:
            p = plan[0]
            _progress(0, total, f"warm-up run (NTP {p['ntp']}, not recorded) ...", t_start)
            kwargs = _monitor_kwargs(f"{run_prefix}-warmup")
            kwargs["advice"] = as_demo
            train_lightning(data, p["widths"][:-1], 1, p["batch_size"], meters(),
                            out / "warmup.json", out / "tensorboard" / "warmup" if as_demo else None,
                            seed, progress=False, monitor_kwargs=kwargs, epoch_lines=False)
            done += 1
            _progress(done, total, "warm-up done", t_start)
        for r, i in order:
            p = plan[i]
            name = f"size-{p['ntp']:09d}-b{p['batch_size']:05d}-r{r + 1}.json"
            t0 = time.monotonic()
            _progress(done, total, f"NTP {p['ntp']} batch {p['batch_size']} repeat {r + 1} ...",
                      t_start)
            kwargs = _monitor_kwargs(f"{run_prefix}-{p['ntp']}")
            if as_demo:
                kwargs["advice"] = True  # its advice lands in the summary (wattwise fit uses it)
            train_lightning(data, p["widths"][:-1], epochs, p["batch_size"], meters(),
                            out / name, out / "tensorboard" / name[:-5] if as_demo else None,
                            seed + r, progress=False, monitor_kwargs=kwargs,
                            epoch_lines=False)
            rec = {"summary": name, "repeat": r + 1, "sequence": done,  # 0 = the warm-up
                   "wall_s": time.monotonic() - t0,
                   **_train_totals(load_summary(out / name))}
            runs[i].append(rec)
            done += 1
            _progress(done, total, _point_text({**p, **rec}), t_start)
    print(file=sys.stderr, flush=True)
    return [aggregate(p, rs) for p, rs in zip(plan, runs)]


@contextmanager
def _newline_on_error() -> Iterator[None]:
    """End the progress line before an error message (it would follow the bar otherwise)."""
    try:
        yield
    except BaseException:
        print(file=sys.stderr, flush=True)
        raise


def aggregate(point: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """A point with its runs: medians of every train total, min..max of the per-sample costs,
    ``summary`` the first run's summary (for ``wattwise fit``), ``estimated`` if any run's is."""
    out = dict(point)
    out["runs"] = runs
    out["summary"] = runs[0]["summary"] if runs else None
    for key in ("joules", "joules_per_sample", "seconds", "samples", "seconds_per_sample",
                "wall_s"):
        vals = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(vals) if vals and len(vals) == len(runs) else None
        if key in ("joules_per_sample", "seconds_per_sample"):
            out[f"{key}_min"] = min(vals) if out[key] is not None else None
            out[f"{key}_max"] = max(vals) if out[key] is not None else None
    out["estimated"] = any(r.get("estimated") is True for r in runs) or None
    if out["estimated"] is None and runs and all(r.get("estimated") is False for r in runs):
        out["estimated"] = False
    return out


def sweep_index(data: Any, points: list[dict[str, Any]], *, shape: str, depth: int, epochs: int,
                batch_size: int, repeats: int, swept: str = "ntp") -> dict[str, Any]:
    """The ``sweep.json`` index (input for ``wattwise fit`` and ``wattwise calibrate``)."""
    estimated = any(p["estimated"] is True for p in points)
    unknown = all(p["joules"] is None for p in points)
    energy = "unknown" if unknown else ("estimated" if estimated else "measured")
    estimated = estimated or unknown
    return {
        "schema": "wattwise.sweep/2",
        "dataset": "sklearn-digits",
        "n_in": data.n_features, "n_out": data.n_classes, "n_train": int(len(data.y_train)),
        "shape": shape, "depth": depth, "epochs": epochs,
        "batch_size": batch_size, "repeats": repeats, "warmup_runs": 1, "swept": swept,
        "estimated": estimated, "energy": energy,
        "quantity": "seconds_per_sample" if estimated else "joules_per_sample",
        "points": points,
    }


def _monitor_kwargs(run_name: str) -> dict[str, Any]:
    """EnergyMonitor options for sweep runs: run name, no per-run sizing advice or table."""
    return {"run_name": run_name, "advice": False, "print_summary": False}


def _progress(done: int, total: int, text: str, t_start: float) -> None:
    width = 20
    filled = int(width * done / max(1, total))
    bar = "#" * filled + "." * (width - filled)
    elapsed = time.monotonic() - t_start
    print(f"\r[{bar}] {done}/{total} {elapsed:5.1f} s  {text}", end="\n" if done > 0 else "",
          file=sys.stderr, flush=True)


def _point_text(p: dict[str, Any]) -> str:
    where = f"NTP {p['ntp']} batch {p['batch_size']}"
    if p["estimated"]:
        v = p["seconds_per_sample"]
        return f"{where}: {v * 1e6:.1f} us/sample (time; joules are only estimates)" \
            if v is not None else f"{where}: unknown"
    v = p["joules_per_sample"]
    return f"{where}: {v * 1e3:.4g} mJ/sample" if v is not None else f"{where}: joules unknown"


# --------------------------------------------------------------------------------------------
# reading: table, knees, plot


def _quantity(index: dict[str, Any]) -> tuple[str, str, float]:
    """(point key, unit, factor) of the reported cost per sample."""
    if index["estimated"]:
        return "seconds_per_sample", "us/sample", 1e6
    return "joules_per_sample", "mJ/sample", 1e3


def _x(index: dict[str, Any], p: dict[str, Any]) -> int:
    return int(p["batch_size"] if index.get("swept") == "batch_size" else p["ntp"])


def format_sweep(index: dict[str, Any]) -> str:
    """A table of the sweep: NTP, batch, widths, median cost per sample, its spread, repeats."""
    est = index["estimated"]
    key, unit, f = _quantity(index)
    lines = []
    if index.get("energy") == "unknown":
        lines.append("NOTE: no energy was recorded (no meter could be opened; see `wattwise "
                     "probe`). The table shows seconds per training sample only.")
    elif est:
        lines.append("NOTE: no hardware energy counter was readable, so the joules are ESTIMATES "
                     "(codecarbon's model: power x time). The sweep therefore reports SECONDS "
                     "per training sample, which the estimate is proportional to; the estimated "
                     "joules are in the run summaries.")
    head = (f"{'NTP':>10} {'batch':>6}  {'widths':<22} {'median ' + unit:>17}  "
            f"{'spread (min..max)':>20} {'spread %':>8} {'runs':>4}")
    lines += [head, "-" * len(head)]
    for p in index["points"]:
        v, lo, hi = p[key], p.get(f"{key}_min"), p.get(f"{key}_max")
        val = UNKNOWN if v is None else f"{v * f:.4g}"
        spread = UNKNOWN if lo is None or hi is None else f"{lo * f:.4g}..{hi * f:.4g}"
        pct = UNKNOWN if v is None or lo is None or hi is None or not v else \
            f"{100 * (hi - lo) / v:.0f}"
        lines.append(f"{p['ntp']:>10} {p['batch_size']:>6}  {str(p['widths']):<22} {val:>17}  "
                     f"{spread:>20} {pct:>8} {len(p.get('runs') or []):>4}")
    return "\n".join(lines)


def find_knees(xs: Sequence[float], ys: Sequence[float], lo: Sequence[float],
               hi: Sequence[float]) -> list[dict[str, float]]:
    """Changes of slope of ``log y`` against ``log x`` that rise above the spread.

    At each interior point the slope change (right slope minus left slope) is compared with
    what the spread alone could make of it: each point's half-range in log
    (``max(log(hi/y), log(y/lo))``) carried through both slopes. Returns
    ``{"x", "slope_change", "noise"}`` for each point where ``|slope_change| > noise``.

    Example:
        >>> xs = [1, 2, 4, 8, 16]
        >>> ys = [1, 1, 1, 2, 4]          # flat, then cost doubles with x from x=4
        >>> [k["x"] for k in find_knees(xs, ys, ys, ys)]
        [4]
    """
    n = len(xs)
    if n < 3:
        return []
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    sig = [max(math.log(h / y), math.log(y / lw), 0.0) for y, lw, h in zip(ys, lo, hi)]
    dx = [lx[i + 1] - lx[i] for i in range(n - 1)]
    slope = [(ly[i + 1] - ly[i]) / dx[i] for i in range(n - 1)]
    out = []
    for i in range(1, n - 1):
        change = slope[i] - slope[i - 1]
        noise = (sig[i - 1] + sig[i]) / dx[i - 1] + (sig[i] + sig[i + 1]) / dx[i]
        if abs(change) > max(noise, 1e-9):
            out.append({"x": float(xs[i]), "slope_change": change, "noise": noise})
    return out


def predicted_boundaries(index: dict[str, Any], hierarchy: Any) -> dict[str, float]:
    """Cache level -> the swept value (NTP, or batch size) at which the backward working set
    fills the level, by the model, within 1/8x..8x of the swept range."""
    from wattwise.model.advise import footprints
    from wattwise.model.curves import log_spaced
    from wattwise.model.working_sets import mlp_working_sets

    pts = index["points"]
    xs = [_x(index, p) for p in pts]
    lo_x, hi_x = max(1, min(xs) // 8), max(xs) * 8
    n_train = index.get("n_train")
    grid = log_spaced(lo_x, hi_x, 200)
    if index.get("swept") == "batch_size":
        widths = pts[0]["widths"]
        sets = [(x, mlp_working_sets(widths, index["n_in"], x, n_obs=n_train)) for x in grid]
    else:
        from wattwise.model.shapes import network_widths as widths_for

        sets = []
        for x in grid:
            w = widths_for(index["shape"], index["depth"], x, index["n_in"], index["n_out"])
            ws = mlp_working_sets(w, index["n_in"], pts[0]["batch_size"], n_obs=n_train)
            if not sets or ws.ntp > sets[-1][0]:
                sets.append((ws.ntp, ws))
    out: dict[str, float] = {}
    prev: dict[str, float] = {}
    for x, ws in sets:
        for lr in footprints(ws, hierarchy, "b"):
            if lr.level not in out and prev.get(lr.level, math.inf) < 1.0 <= lr.ratio:
                out[lr.level] = float(x)
            prev[lr.level] = lr.ratio
    return out


def knee_rows(index: dict[str, Any], hierarchy: Any) -> list[dict[str, Any]]:
    """Per cache boundary: the predicted position, the nearest measured knee above the
    spread (or None) and their distance (``knee / boundary``, and in octaves)."""
    key, _, _ = _quantity(index)
    pts = [p for p in index["points"] if p[key] is not None and p[f"{key}_min"]]
    xs = [_x(index, p) for p in pts]
    knees = find_knees(xs, [p[key] for p in pts], [p[f"{key}_min"] for p in pts],
                       [p[f"{key}_max"] for p in pts]) if pts else []
    rows = []
    for level, bx in predicted_boundaries(index, hierarchy).items():
        inside = bool(xs) and min(xs) <= bx <= max(xs)
        near = min(knees, key=lambda k: abs(math.log(k["x"] / bx)), default=None)
        rows.append({
            "level": level, "predicted": bx, "inside_sweep": inside,
            "knee": None if near is None else near["x"],
            "slope_change": None if near is None else near["slope_change"],
            "noise": None if near is None else near["noise"],
            "ratio": None if near is None else near["x"] / bx,
            "octaves": None if near is None else math.log2(near["x"] / bx),
        })
    return rows


def format_knees(index: dict[str, Any], hierarchy: Any) -> str:
    """The knee-versus-boundary table (one row per cache level of this machine)."""
    what = "batch size" if index.get("swept") == "batch_size" else "NTP"
    if hierarchy is None:
        return "knees: not compared (this machine's caches were not detected; wattwise probe)"
    lines = [f"measured knees against the model's cache boundaries ({what} where the backward "
             f"working set fills the level; a knee is a change of slope of log cost per sample "
             f"above the spread of the repeats)",
             f"{'level':<6} {'predicted ' + what:>16} {'measured knee':>14} {'distance':>18} "
             f"{'slope change':>13} {'noise':>7}"]
    lines.append("-" * len(lines[-1]))
    for r in index.get("knees") or []:
        pred = f"{r['predicted']:,.0f}" + ("" if r["inside_sweep"] else "*")
        if r["knee"] is None:
            lines.append(f"{r['level']:<6} {pred:>16} {'none above spread':>14}")
            continue
        dist = f"x{r['ratio']:.3g} ({r['octaves']:+.1f} oct)"
        lines.append(f"{r['level']:<6} {pred:>16} {r['knee']:>14,.0f} {dist:>18} "
                     f"{r['slope_change']:>+13.2f} {r['noise']:>7.2f}")
    if not index.get("knees"):
        lines.append("(no cache boundary within 1/8x..8x of the swept range)")
    lines.append("* outside the swept range. The same knee may be the nearest to two boundaries.")
    return "\n".join(lines)


def _hierarchy() -> Any:
    from wattwise.hardware import detect_hierarchy

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # detection notes; the output says what it shows
            return detect_hierarchy("auto")
    except Exception:  # noqa: BLE001 - detection is best effort
        return None


def plot_sweep(index: dict[str, Any], path: Path, hierarchy: Any) -> str:
    """Plot median cost per sample (with its spread) and cost per sample per parameter against
    the swept quantity, with this machine's cache boundaries and the model's prediction.

    Returns a note on what could not be drawn ("" when everything was drawn).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    key, unit, f = _quantity(index)
    pts = [p for p in index["points"] if p[key] is not None]
    by_batch = index.get("swept") == "batch_size"
    fig, (ax, ax_p) = plt.subplots(2, 1, figsize=(8, 7.5), sharex=True)
    xs = [_x(index, p) for p in pts]
    ys = [p[key] * f for p in pts]
    err = [[(p[key] - p[f"{key}_min"]) * f for p in pts], [(p[f"{key}_max"] - p[key]) * f for p in pts]]
    name = "time" if index["estimated"] else "measured energy"
    ax.errorbar(xs, ys, yerr=err, fmt="o-", capsize=3,
                label=f"{name}: median of {index.get('repeats', 1)}, bars min..max")
    ax.set_ylabel(f"{name} per training sample [{unit.split('/')[0]}]")
    per_param = [y / p["ntp"] for y, p in zip(ys, pts)]
    ax_p.plot(xs, per_param, "o-", color="C1")
    ax_p.set_ylabel(f"per sample per parameter [{unit.split('/')[0]}]")
    for a in (ax, ax_p):
        a.set_xscale("log")
        a.set_yscale("log")
        a.grid(alpha=0.3, which="both")
    ax_p.set_xlabel("batch size" if by_batch else "network size NTP (trainable parameters)")
    fixed = f"NTP {pts[0]['ntp']}" if by_batch and pts else f"batch {index['batch_size']}"
    ax.set_title(f"wattwise sweep: {index['shape']} depth {index['depth']}, {fixed}"
                 + (" - energy counters unavailable (time shown)" if index["estimated"] else ""))
    notes = []
    if hierarchy is None:
        notes.append("cache boundaries not drawn: this machine's caches were not detected")
    for r in index.get("knees") or []:
        for a in (ax, ax_p):
            a.axvline(r["predicted"], color="red", alpha=0.5, linestyle=":")
        ax.annotate(f"b fills {r['level']}", (r["predicted"], 1.0),
                    xycoords=("data", "axes fraction"), color="red", fontsize=8, rotation=90,
                    va="top", ha="right")
        if r["knee"] is not None:
            ax_p.axvline(r["knee"], color="green", alpha=0.4)
    if not by_batch and hierarchy is not None:
        try:
            _draw_model(ax, index, hierarchy)
        except Exception as e:  # noqa: BLE001 - the measured curve stands without the model
            notes.append(f"model overlay not drawn: {type(e).__name__}: {e}")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise CLIError(f"--plot {str(path)!r}: cannot write: {e.strerror or e} (the run "
                       "summaries and sweep.json are written)") from None
    finally:
        plt.close(fig)
    return "; ".join(notes)


def _draw_model(ax: Any, index: dict[str, Any], hierarchy: Any) -> None:
    """Draw the model's predicted J/sample (this machine's coefficients) on a second axis."""
    from wattwise.model.curves import ntp_curve
    from wattwise.sizing import resolve_coefficients

    ntps = [p["ntp"] for p in index["points"]]
    curve = ntp_curve(hierarchy, resolve_coefficients(None, hierarchy), shape=index["shape"],
                      depth=index["depth"], n_in=index["n_in"], n_out=index["n_out"],
                      batch_size=index["batch_size"], n_samples=index.get("n_train"),
                      min_size=max(2, min(ntps) // 2), max_size=max(ntps) * 2, points=60)
    ax2 = ax.twinx()
    ax2.plot(curve.ntp, [j * 1e3 for j in curve.joules_per_sample], "--", color="gray",
             label="model prediction (estimate)")
    ax2.set_ylabel("model: predicted mJ per sample (estimate)")
    ax2.legend(fontsize=8, loc="lower right")
