"""``wattwise sweep``: the paper's cache-knee experiment on this machine.

Trains a BUTTER-shaped MLP on the bundled digits at a range of sizes (parameter counts, NTP),
a few epochs each, measures joules per training sample with the available meters (or seconds
per sample when only estimates exist), writes one run summary per size (input for
``wattwise fit``) and plots the result against NTP with this machine's cache boundaries and the
energy model's prediction.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
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
  wattwise sweep                                         # 6 sizes from 2^10 to 2^17, 2 epochs each
  wattwise sweep --sizes 1024 4096 16384 --epochs 1
  wattwise sweep --min-size 1000 --max-size 1000000 --points 12 --plot knee.png
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
            "(number of trainable parameters, NTP), a few epochs each, and measures joules per "
            "training sample with the available meters. When only estimates exist it reports "
            "seconds per sample instead, and says so. Writes one run summary per size (they "
            "feed `wattwise fit`) and plots the result against NTP with this machine's cache "
            "boundaries and the energy model's prediction."
        ),
        epilog=EPILOG,
    )
    p.add_argument("--framework", default="lightning", metavar="NAME",
                   help="training framework (lightning, the only one supported by sweep)")
    p.add_argument("--sizes", nargs="+", type=int, default=None, metavar="NTP",
                   help="target sizes (number of trainable parameters)")
    p.add_argument("--min-size", type=int, default=2**10, metavar="NTP",
                   help="smallest target size (default 1024)")
    p.add_argument("--max-size", type=int, default=2**17, metavar="NTP",
                   help="largest target size (default 131072)")
    p.add_argument("--points", type=int, default=6, metavar="N",
                   help="number of sizes, log-spaced between --min-size and --max-size (default 6)")
    p.add_argument("--shape", default="rectangle", metavar="SHAPE",
                   help=f"network shape: {', '.join(SHAPES)} (default rectangle)")
    p.add_argument("--depth", type=int, default=3, metavar="D",
                   help="number of Dense layers including the output (default 3)")
    p.add_argument("--epochs", type=int, default=2, metavar="N", help="epochs per size (default 2)")
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
                "seconds_per_sample": None, "estimated": None}
    sps = (tr.seconds / tr.samples) if (tr.seconds is not None and tr.samples) else None
    return {"joules": tr.joules, "joules_per_sample": tr.joules_per_sample,
            "seconds": tr.seconds, "samples": tr.samples, "seconds_per_sample": sps,
            "estimated": tr.estimated}


def run(args: argparse.Namespace) -> int:
    from wattwise.datasets import load_digits
    from wattwise.model.shapes import ntp

    if args.framework != "lightning":
        raise CLIError(f"--framework {args.framework!r}: sweep supports lightning only")
    check_training_args(args, max_epochs=1000)
    if args.shape not in SHAPES:
        raise CLIError(f"--shape {args.shape!r}: choose from {', '.join(SHAPES)}")
    check_int_range("--depth", args.depth, 2, 20)
    sizes = target_sizes(args)
    meters = meters_arg(args.meters, args.rapl_root)
    if args.plot is not None:  # before any training, not after all of it
        check_output_file("--plot", args.plot, plot=True)
    out = make_out_dir(args.out, "sweep")
    data = load_digits(seed=args.seed)
    plan = []
    for size in sizes:
        widths = network_widths(args.shape, args.depth, size, data.n_features, data.n_classes)
        plan.append((size, widths, ntp(data.n_features, widths)))
    print(f"wattwise sweep: {len(plan)} size(s), {args.shape} depth {args.depth}, "
          f"{args.epochs} epoch(s) each, batch size {args.batch_size}, on scikit-learn's digits "
          f"({len(data.y_train)} train samples); meters={' '.join(args.meters)}; output in {out}", flush=True)
    points = _train_points(args, data, plan, out, meters)
    index = _index(args, data, points)
    (out / "sweep.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    print(format_sweep(index))
    plot_path = Path(args.plot) if args.plot else out / "sweep.png"
    note = plot_sweep(index, plot_path, batch_size=args.batch_size,
                      n_samples=data.n_samples)
    print(f"\nwrote {len(points)} run summaries and sweep.json to {out}")
    print(f"wrote plot to {plot_path}" + (f" ({note})" if note else ""))
    print(f"refit the energy model to these runs: wattwise fit {out}/size-*.json "
          f"--out {out}/coefficients.json")
    return 0


def _train_points(args: argparse.Namespace, data: Any, plan: list[tuple[int, list[int], int]],
                  out: Path, meters: Any) -> list[dict[str, Any]]:
    """Train every planned size; one point (train totals of its run summary) per size."""
    from wattwise.cli.demo import train_lightning
    from wattwise.report import load_summary

    points: list[dict[str, Any]] = []
    t_start = time.monotonic()
    for i, (size, widths, ntp) in enumerate(plan):
        summary_path = out / f"size-{ntp:09d}.json"
        t0 = time.monotonic()
        _progress(i, len(plan), f"NTP {ntp} widths {widths} ...", t_start)
        if i > 0:  # fresh meter instances for every run (the callback closes them)
            meters = meters_arg(args.meters, args.rapl_root)
        train_lightning(data, widths[:-1], args.epochs, args.batch_size, meters, summary_path,
                        None, args.seed, progress=False,
                        monitor_kwargs=_monitor_kwargs(f"sweep-{args.shape}-{ntp}"))
        totals = _train_totals(load_summary(summary_path))
        point = {"target_size": size, "ntp": ntp, "widths": widths,
                 "summary": summary_path.name, "wall_s": time.monotonic() - t0, **totals}
        points.append(point)
        _progress(i + 1, len(plan), _point_text(point), t_start)
    print(file=sys.stderr, flush=True)
    return points


def _index(args: argparse.Namespace, data: Any, points: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``sweep.json`` index (input for ``wattwise fit``)."""
    estimated = any(p["estimated"] is True for p in points)
    unknown = all(p["joules"] is None for p in points)
    energy = "unknown" if unknown else ("estimated" if estimated else "measured")
    estimated = estimated or unknown
    return {
        "schema": "wattwise.sweep/1",
        "dataset": "sklearn-digits",
        "n_in": data.n_features, "n_out": data.n_classes,
        "shape": args.shape, "depth": args.depth, "epochs": args.epochs,
        "batch_size": args.batch_size, "estimated": estimated, "energy": energy,
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
    end = "\n" if done > 0 else ""
    print(f"\r[{bar}] {done}/{total} {elapsed:5.1f} s  {text}", end=end, file=sys.stderr,
          flush=True)


def _point_text(p: dict[str, Any]) -> str:
    if p["estimated"]:
        v = p["seconds_per_sample"]
        return f"NTP {p['ntp']}: {v * 1e6:.1f} us/sample (time; joules are only estimates)" \
            if v is not None else f"NTP {p['ntp']}: unknown"
    v = p["joules_per_sample"]
    return f"NTP {p['ntp']}: {v * 1e3:.4g} mJ/sample" if v is not None else \
        f"NTP {p['ntp']}: joules unknown"


def format_sweep(index: dict[str, Any]) -> str:
    """A table of the sweep: NTP, widths, J/sample (or s/sample), seconds."""
    est = index["estimated"]
    lines = []
    if index.get("energy") == "unknown":
        lines.append("NOTE: no energy was recorded (no meter could be opened; see `wattwise "
                     "probe`). The table shows seconds per training sample only.")
    elif est:
        lines.append("NOTE: no hardware energy counter was readable, so the joules are ESTIMATES "
                     "(codecarbon's model: power x time). The sweep therefore reports SECONDS "
                     "per training sample, which the estimate is proportional to; the estimated "
                     "joules are in the run summaries.")
    head = f"{'NTP':>10}  {'widths':<22} {'us/sample' if est else 'mJ/sample':>10}  {'train s':>8}"
    lines += [head, "-" * len(head)]
    for p in index["points"]:
        v = p["seconds_per_sample"] if est else p["joules_per_sample"]
        val = UNKNOWN if v is None else (f"{v * 1e6:.2f}" if est else f"{v * 1e3:.4g}")
        secs = UNKNOWN if p["seconds"] is None else f"{p['seconds']:.2f}"
        lines.append(f"{p['ntp']:>10}  {str(p['widths']):<22} {val:>10}  {secs:>8}")
    return "\n".join(lines)


def plot_sweep(index: dict[str, Any], path: Path, *, batch_size: int, n_samples: int) -> str:
    """Plot J/sample (or s/sample) against NTP with cache boundaries and the model's prediction.

    Returns a note on what could not be drawn ("" when everything was drawn).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    est = index["estimated"]
    pts = [p for p in index["points"]
           if (p["seconds_per_sample"] if est else p["joules_per_sample"]) is not None]
    fig, ax = plt.subplots(figsize=(8, 4.8))
    xs = [p["ntp"] for p in pts]
    if est:
        ys = [p["seconds_per_sample"] * 1e6 for p in pts]
        ax.set_ylabel("time per training sample [µs]")
    else:
        ys = [p["joules_per_sample"] * 1e3 for p in pts]
        ax.set_ylabel("measured energy per training sample [mJ]")
    ax.plot(xs, ys, "o-", label="measured (this machine)" if not est else "measured time")
    ax.set_xscale("log")
    ax.set_xlabel("network size NTP (trainable parameters)")
    ax.set_title(f"wattwise sweep: {index['shape']} depth {index['depth']}, batch {batch_size}"
                 + (" - energy counters unavailable" if est else ""))
    notes = []
    try:
        notes += _draw_model(ax, index, batch_size=batch_size, n_samples=n_samples)
    except Exception as e:  # noqa: BLE001 - the measured curve stands without the model
        notes.append(f"model overlay not drawn: {type(e).__name__}: {e}")
    ax.grid(alpha=0.3, which="both")
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


def _draw_model(ax: Any, index: dict[str, Any], *, batch_size: int, n_samples: int) -> list[str]:
    """Draw the cache boundaries and the model's prediction (on a second axis)."""
    from wattwise.hardware import detect_hierarchy
    from wattwise.model.coefficients import preset
    from wattwise.model.curves import ntp_curve

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # detection notes; the plot says what it shows
            hierarchy = detect_hierarchy("auto")
    except Exception:  # noqa: BLE001 - detection is best effort
        return ["model overlay not drawn: this machine's cache hierarchy was not detected "
                "(see `wattwise probe`)"]
    ntps = [p["ntp"] for p in index["points"]]
    curve = ntp_curve(hierarchy, preset(hierarchy.kind), shape=index["shape"],
                      depth=index["depth"], n_in=index["n_in"], n_out=index["n_out"],
                      batch_size=batch_size, n_samples=n_samples,
                      min_size=max(2, min(ntps) // 2), max_size=max(ntps) * 2, points=60)
    ax2 = ax.twinx()
    ax2.plot(curve.ntp, [j * 1e3 for j in curve.joules_per_sample], "--", color="gray",
             label="model prediction (estimate)")
    ax2.set_ylabel("BUTTER-E model: predicted mJ per sample (estimate)")
    ax2.legend(fontsize=8, loc="lower right")
    boundaries = curve.boundaries
    for level, ntp in boundaries.items():
        ax.axvline(ntp, color="red", alpha=0.5, linestyle=":")
        ax.annotate(f"b fills {level}", (ntp, 1.0), xycoords=("data", "axes fraction"),
                    color="red", fontsize=8, rotation=90, va="top", ha="right")
    index["model"] = {"hierarchy": hierarchy.name, "boundaries_ntp": boundaries}
    return []
