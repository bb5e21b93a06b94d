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
import math
import sys
import time
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  wattwise sweep                                         # 6 sizes from 2^10 to 2^17, 2 epochs each
  wattwise sweep --sizes 1024 4096 16384 --epochs 1
  wattwise sweep --min-size 1000 --max-size 1000000 --points 12 --plot knee.png
  wattwise sweep --shape trapezoid --depth 5 --out runs/sweep1
  wattwise fit runs/sweep1/size-*.json --out coefficients.json   # refit the model to them
"""

SHAPES = ("rectangle", "trapezoid", "exponential", "wide_first_2x", "wide_first_4x",
          "wide_first_8x", "wide_first_16x")


def register(subparsers: Any) -> None:
    """Add the ``sweep`` subcommand."""
    p = subparsers.add_parser(
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
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    p.add_argument("--batch-size", type=int, default=64, metavar="B", help="batch size (default 64)")
    p.add_argument("--meters", nargs="+", default=["auto"], metavar="NAME",
                   help="auto (default) or meter names: nvml rapl pyrapl codecarbon")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder (default ./wattwise_runs/sweep-<timestamp>)")
    p.add_argument("--plot", default=None, metavar="FILE.png",
                   help="plot file (default <out>/sweep.png)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    from wattwise.cli.demo import add_rapl_root

    add_rapl_root(p)
    p.set_defaults(func=run)


def target_sizes(args: argparse.Namespace) -> list[int]:
    """The target sizes: ``--sizes`` as given, or log-spaced from ``--min-size`` to ``--max-size``."""
    from wattwise.cli.main import CLIError

    if args.sizes:
        bad = [s for s in args.sizes if not 1 <= s <= 10**9]
        if bad:
            raise CLIError(f"--sizes: {bad[0]!r} is not a size in 1..1000000000 (parameters)")
        return sorted(set(args.sizes))
    if not 1 <= args.min_size <= 10**9:
        raise CLIError(f"--min-size {args.min_size!r}: expected an integer in 1..1000000000")
    if not args.min_size <= args.max_size <= 10**9:
        raise CLIError(f"--max-size {args.max_size!r}: expected an integer in "
                       f"{args.min_size}..1000000000 (at least --min-size)")
    if not 1 <= args.points <= 100:
        raise CLIError(f"--points {args.points!r}: expected an integer in 1..100")
    if args.points == 1 or args.min_size == args.max_size:
        return [args.min_size]
    lo, hi = math.log(args.min_size), math.log(args.max_size)
    sizes = {round(math.exp(lo + (hi - lo) * i / (args.points - 1))) for i in range(args.points)}
    return sorted(sizes)


def ntp_of(n_in: int, widths: list[int]) -> int:
    """Number of trainable parameters of Dense layers with bias: sum (w_prev + 1) * w."""
    total, prev = 0, n_in
    for w in widths:
        total += (prev + 1) * w
        prev = w
    return total


def network_widths(shape: str, depth: int, size: int, n_in: int, n_out: int) -> list[int]:
    """BUTTER widths for a target size, from :mod:`wattwise.model` (see its docs)."""
    from wattwise.cli.main import CLIError

    try:
        from wattwise.model.butter_e import network_widths as _widths
    except ImportError as e:
        raise CLIError(f"sweep needs wattwise.model.butter_e.network_widths ({e})") from None
    try:
        return [int(w) for w in _widths(shape, depth, size, n_in, n_out)]
    except (ValueError, KeyError) as e:
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
    from wattwise.cli.demo import default_out, meters_arg, train_lightning
    from wattwise.cli.main import CLIError

    if args.framework != "lightning":
        raise CLIError(f"--framework {args.framework!r}: sweep supports lightning only")
    if args.shape not in SHAPES:
        raise CLIError(f"--shape {args.shape!r}: choose from {', '.join(SHAPES)}")
    if not 2 <= args.depth <= 20:
        raise CLIError(f"--depth {args.depth!r}: expected an integer in 2..20")
    if not 1 <= args.epochs <= 1000:
        raise CLIError(f"--epochs {args.epochs!r}: expected an integer in 1..1000")
    if not 1 <= args.batch_size <= 100_000:
        raise CLIError(f"--batch-size {args.batch_size!r}: expected an integer in 1..100000")
    sizes = target_sizes(args)
    meters = meters_arg(args.meters, args.rapl_root)
    out = Path(args.out) if args.out else default_out("sweep")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out {str(out)!r}: cannot create the folder: {e.strerror or e}") from None

    from wattwise.datasets import load_digits
    from wattwise.report import load_summary

    data = load_digits(seed=args.seed)
    plan = []
    for size in sizes:
        widths = network_widths(args.shape, args.depth, size, data.n_features, data.n_classes)
        plan.append((size, widths, ntp_of(data.n_features, widths)))
    print(f"wattwise sweep: {len(plan)} size(s), {args.shape} depth {args.depth}, "
          f"{args.epochs} epoch(s) each, batch size {args.batch_size}, on scikit-learn's digits "
          f"({len(data.y_train)} train samples); meters={' '.join(args.meters)}; output in {out}", flush=True)
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

    estimated = any(p["estimated"] is True for p in points)
    unknown = all(p["joules"] is None for p in points)
    energy = "unknown" if unknown else ("estimated" if estimated else "measured")
    estimated = estimated or unknown
    index = {
        "schema": "wattwise.sweep/1",
        "dataset": "sklearn-digits",
        "n_in": data.n_features, "n_out": data.n_classes,
        "shape": args.shape, "depth": args.depth, "epochs": args.epochs,
        "batch_size": args.batch_size, "estimated": estimated, "energy": energy,
        "quantity": "seconds_per_sample" if estimated else "joules_per_sample",
        "points": points,
    }
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
        val = "-" if v is None else (f"{v * 1e6:.2f}" if est else f"{v * 1e3:.4g}")
        secs = "-" if p["seconds"] is None else f"{p['seconds']:.2f}"
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
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return "; ".join(notes)


def machine_hierarchy() -> Any:
    """This machine's CPU memory hierarchy from :mod:`wattwise.hardware`, or None if unknown."""
    try:
        from wattwise import hardware
    except ImportError:
        return None
    for name in ("detect_hierarchy", "detect_cpu_hierarchy", "cpu_hierarchy", "detect_cpu",
                 "detect"):
        fn = getattr(hardware, name, None)
        if callable(fn):
            try:
                return fn()
            except Exception:  # noqa: BLE001 - detection is best effort
                return None
    return None


def model_curve(index: dict[str, Any], hierarchy: Any, *, batch_size: int, n_samples: int,
                points: int = 60) -> dict[str, Any]:
    """The model's predicted J/sample over NTP and the NTPs where the backward set fills each cache.

    Returns ``{"ntp": [...], "joules_per_sample": [...], "boundaries": {level: ntp}}``; the
    predictions are estimates from the BUTTER-E model with the preset coefficients.
    """
    from wattwise.model.advise import footprints
    from wattwise.model.coefficients import preset
    from wattwise.model.energy import joules_per_sample, pass_features
    from wattwise.model.shapes import network_widths as widths_for
    from wattwise.model.working_sets import mlp_working_sets

    ntps = [p["ntp"] for p in index["points"]]
    lo, hi = math.log(max(2, min(ntps) / 2)), math.log(max(ntps) * 2)
    coeffs = preset(hierarchy.kind)
    xs: list[int] = []
    ys: list[float] = []
    ratios: list[dict[str, float]] = []
    for i in range(points):
        size = round(math.exp(lo + (hi - lo) * i / (points - 1)))
        widths = widths_for(index["shape"], index["depth"], size, index["n_in"], index["n_out"])
        ws = mlp_working_sets(widths, index["n_in"], batch_size, n_obs=n_samples)
        if xs and ws.ntp == xs[-1]:
            continue
        xs.append(ws.ntp)
        ys.append(joules_per_sample(pass_features(ws, hierarchy), coeffs, batch_size))
        ratios.append({lr.level: lr.ratio for lr in footprints(ws, hierarchy, "b")})
    boundaries: dict[str, float] = {}
    for j in range(1, len(xs)):
        for level, r in ratios[j].items():
            r0 = ratios[j - 1].get(level)
            if r0 is not None and r0 < 1.0 <= r and level not in boundaries:
                boundaries[level] = xs[j]
    return {"ntp": xs, "joules_per_sample": ys, "boundaries": boundaries}


def _draw_model(ax: Any, index: dict[str, Any], *, batch_size: int, n_samples: int) -> list[str]:
    """Draw the cache boundaries and the model's prediction (on a second axis)."""
    hierarchy = machine_hierarchy()
    if hierarchy is None:
        return ["model overlay not drawn: this machine's cache hierarchy was not detected "
                "(see `wattwise probe`)"]
    res = model_curve(index, hierarchy, batch_size=batch_size, n_samples=n_samples)
    ax2 = ax.twinx()
    ax2.plot(res["ntp"], [j * 1e3 for j in res["joules_per_sample"]], "--", color="gray",
             label="model prediction (estimate)")
    ax2.set_ylabel("BUTTER-E model: predicted mJ per sample (estimate)")
    ax2.legend(fontsize=8, loc="lower right")
    for level, ntp in res["boundaries"].items():
        ax.axvline(ntp, color="red", alpha=0.5, linestyle=":")
        ax.annotate(f"b fills {level}", (ntp, 1.0), xycoords=("data", "axes fraction"),
                    color="red", fontsize=8, rotation=90, va="top", ha="right")
    index["model"] = {"hierarchy": getattr(hierarchy, "name", str(hierarchy)),
                      "boundaries_ntp": res["boundaries"]}
    return []
