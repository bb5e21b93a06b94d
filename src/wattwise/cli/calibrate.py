"""``wattwise calibrate``: fit the energy model's coefficients on this machine and store them.

Runs a short sweep (:func:`wattwise.cli.sweep.measure`: one warm-up run, every point repeated,
interleaved) of small MLPs on the bundled digits - network sizes around the demo's at batch size
64, and the demo's network at a few batch sizes - with whatever meters this machine has, fits
few free coefficients (:func:`wattwise.calibration.fit_calibration`) and stores them with their
provenance in the user's config folder (:func:`wattwise.calibration.save_calibration`). From
then on the sizing advice (``wattwise advise``, the callbacks' check, ``wattwise demo``) uses
them for this hardware.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from wattwise.cli._common import (
    CLIError,
    add_subcommand,
    add_training_options,
    make_out_dir,
    meters_arg,
)

EPILOG = """\
examples:
  wattwise calibrate --quick          # about 2 minutes on a 2-core CPU
  wattwise calibrate                  # more sizes, batch sizes and repeats; better
  wattwise calibrate --show           # the stored calibration for this machine, if any
  wattwise calibrate --meters rapl    # only a real counter (error when unreadable)

afterwards:
  wattwise demo                       # the advice says "calibrated on this machine (...)"
  wattwise fit RUN.json ... --update-calibration   # refine it with your own runs
"""

QUICK: dict[str, Any] = {"sizes": (2_000, 8_000, 26_122, 100_000), "batch_sizes": (32, 128), "repeats": 3,
         "epochs": 3}  # the demo's regime: 3 measured epochs after the warm-up
FULL: dict[str, Any] = {"sizes": (1_000, 3_000, 8_000, 26_122, 60_000, 150_000, 400_000),
        "batch_sizes": (16, 32, 128, 256), "repeats": 3, "epochs": 8}
"""The sweeps: rectangle depth 3 at ``sizes`` (NTP targets) with batch size 64, plus the
demo's network (NTP 26,122) at ``batch_sizes``; ``repeats`` runs per point."""


def register(subparsers: Any) -> None:
    """Add the ``calibrate`` subcommand."""
    p = add_subcommand(
        subparsers,
        "calibrate",
        help="fit the energy model to this machine (short sweep) and store it for the advice",
        description=(
            "Trains small BUTTER-shaped MLPs on scikit-learn's bundled digits (a warm-up run, "
            "then several sizes and batch sizes, each repeated), measures joules per training "
            "sample with the available meters (codecarbon's estimates when no counter is "
            "readable, and labelled so), fits the energy model's coefficients and stores them "
            "with their provenance (date, meters, measured or estimated, cross-validated error, "
            "hardware) in the user's config folder ($WATTWISE_CONFIG_DIR overrides it). The "
            "sizing advice uses them on this hardware from then on."
        ),
        epilog=EPILOG,
    )
    p.add_argument("--quick", action="store_true",
                   help="fewer points and repeats: under 3 minutes on a 2-core CPU")
    p.add_argument("--show", action="store_true",
                   help="print this machine's stored calibration and its file, train nothing")
    add_training_options(p, "calibrate")
    p.add_argument("--json", action="store_true", help="print the stored calibration as JSON")
    p.set_defaults(func=run, batch_size=64)


def _hierarchy() -> Any:
    from wattwise.cli._common import warnings_to_stderr
    from wattwise.errors import ConfigurationError
    from wattwise.hardware import detect_hierarchy

    try:
        with warnings_to_stderr("calibrate"):
            return detect_hierarchy("auto")
    except ConfigurationError as e:
        raise CLIError(f"cannot detect this machine's memory hierarchy: {e}") from None


def run(args: argparse.Namespace) -> int:
    from wattwise.calibration import calibration_path, load_calibration

    h = _hierarchy()
    if args.show:
        path = calibration_path(h)
        cal = load_calibration(h)
        if cal is None:
            print(f"no calibration for this machine ({h.name}) at {path}; "
                  "run `wattwise calibrate --quick`")
            return 1
        print(json.dumps(cal.to_json(), indent=2) if args.json else
              f"{cal.label}\nfile: {path}\nmethod: {cal.method}")
        return 0
    meters_arg(args.meters, args.rapl_root)  # check the names before any work
    cal, fit, path, index = calibrate(args, h)
    if args.json:
        print(json.dumps(cal.to_json(), indent=2))
        return 0
    print(format_fit(index, fit))
    print(f"\nstored: {path}")
    print(f"coefficients: {cal.label}")
    print("the sizing advice (wattwise advise, the callbacks, wattwise demo) uses it on this "
          "machine from now on")
    return 0


def plan(spec: dict[str, Any], n_in: int, n_out: int) -> list[dict[str, Any]]:
    """The calibration sweep's points (see :data:`QUICK`)."""
    from wattwise.model.shapes import network_widths, ntp

    points = []
    for size in spec["sizes"]:
        w = network_widths("rectangle", 3, size, n_in, n_out)
        points.append({"target_size": size, "widths": w, "ntp": ntp(n_in, w), "batch_size": 64})
    w = network_widths("rectangle", 3, 26_122, n_in, n_out)
    for b in spec["batch_sizes"]:
        points.append({"target_size": 26_122, "widths": w, "ntp": ntp(n_in, w), "batch_size": b})
    return points


def _usable(point: dict[str, Any]) -> bool:
    """A point with known joules and train batches in every run."""
    runs = point.get("runs") or []
    return point["joules"] is not None and bool(runs) and all(r.get("batches") for r in runs)


def point_rows(index: dict[str, Any], h: Any) -> tuple[list[tuple[float, ...]], list[float]]:
    """One fitting row per point with known joules: train batches x the model's per-step
    features (:func:`wattwise.model.energy.pass_features`) of its network, batch size and this
    machine; the median train joules of its repeats."""
    from wattwise.model.energy import pass_features
    from wattwise.model.working_sets import mlp_working_sets

    rows, joules = [], []
    for p in index["points"]:
        if not _usable(p):
            continue
        batches = [r["batches"] for r in p["runs"]]
        ws = mlp_working_sets(p["widths"], index["n_in"], p["batch_size"], n_obs=index["n_train"])
        step = pass_features(ws, h).train_step
        n = sorted(batches)[len(batches) // 2]
        rows.append(tuple(n * x for x in step))
        joules.append(float(p["joules"]))
    return rows, joules


def calibrate(args: argparse.Namespace, h: Any) -> tuple[Any, Any, Any, dict[str, Any]]:
    """Run the calibration sweep, fit, store; (calibration, fit, path, sweep index)."""
    from wattwise.calibration import make_calibration, save_calibration
    from wattwise.cli.sweep import measure, sweep_index
    from wattwise.datasets import load_digits
    from wattwise.errors import ConfigurationError

    spec = QUICK if args.quick else FULL
    data = load_digits(seed=args.seed)
    points = plan(spec, data.n_features, data.n_classes)
    out = make_out_dir(args.out, "calibrate")
    n_runs = len(points) * spec["repeats"] + 1
    print(f"wattwise calibrate{' --quick' if args.quick else ''}: {len(points)} points x "
          f"{spec['repeats']} repeats + 1 warm-up = {n_runs} runs of {spec['epochs']} epoch(s) "
          f"on scikit-learn's digits ({len(data.y_train)} train samples); hardware {h.name}; "
          f"meters={' '.join(args.meters)}; runs in {out}", flush=True)
    measured = measure(points, data=data, epochs=spec["epochs"], repeats=spec["repeats"],
                       meters=lambda: meters_arg(args.meters, args.rapl_root), out=out,
                       seed=args.seed, run_prefix="calibrate", command="calibrate",
                       as_demo=True)
    index = sweep_index(data, measured, shape="rectangle", depth=3, epochs=spec["epochs"],
                        batch_size=64, repeats=spec["repeats"], swept="ntp")
    (out / "sweep.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    if index["energy"] == "unknown":
        raise CLIError("no energy was recorded (no meter could be opened; see `wattwise probe`); "
                       "nothing to calibrate on")
    rows, joules = point_rows(index, h)
    if not rows:
        raise CLIError(f"no point has known joules (see the run summaries in {out})")
    meters = _meter_names(out, index)
    try:
        cal, fit = make_calibration(rows, joules, h, meters=meters, energy=(
            "estimated" if index["estimated"] else "measured"), what="calibration sweep")
    except ConfigurationError as e:
        raise CLIError(f"the fit failed: {e}") from None
    index["calibration"] = {"method": fit.method, "scales": dict(fit.scales),
                            "fit_error": fit.fit_error, "cv_error": fit.cv_error,
                            "ratios": list(fit.ratios)}
    (out / "sweep.json").write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    try:
        path = save_calibration(cal, h)
    except OSError as e:
        raise CLIError(f"cannot write the calibration: {e.strerror or e} (set "
                       "WATTWISE_CONFIG_DIR to a writable folder)") from None
    return cal, fit, path, index


def _meter_names(out: Any, index: dict[str, Any]) -> list[str]:
    """The meters that measured the first run (from its run summary)."""
    from wattwise.report import load_summary

    try:
        summary = load_summary(out / index["points"][0]["runs"][0]["summary"])
    except Exception:  # noqa: BLE001 - the names are provenance, not needed for the fit
        return []
    names = []
    for m in summary.get("meters") or []:
        name = m.get("name") if isinstance(m, dict) else None
        if isinstance(name, str) and name not in names:
            names.append(name)
    return names


def format_fit(index: dict[str, Any], fit: Any) -> str:
    """Measured against fitted J/sample per point, the method and the errors."""
    est = index["estimated"]
    lines = []
    if est:
        lines.append("NOTE: no hardware energy counter was readable: the joules are codecarbon's "
                     "ESTIMATES (power x time), and so is this calibration (labelled so).")
    lines.append(f"{'NTP':>8} {'batch':>6} {'J/sample ' + ('(est.)' if est else 'measured'):>20} "
                 f"{'spread %':>9} {'fitted':>10} {'fit/meas':>9}")
    lines.append("-" * len(lines[-1]))
    usable = [p for p in index["points"] if _usable(p)]
    for p, r in zip(usable, fit.ratios):
        jps = p["joules_per_sample"]
        lo, hi = p.get("joules_per_sample_min"), p.get("joules_per_sample_max")
        spread = f"{100 * (hi - lo) / jps:.0f}" if jps and lo is not None and hi is not None else "?"
        lines.append(f"{p['ntp']:>8} {p['batch_size']:>6} {jps * 1e3:>17.4g} mJ {spread:>9} "
                     f"{jps * r * 1e3:>7.4g} mJ {r:>9.2f}")
    cv = "n/a (under 3 points)" if fit.cv_error is None else f"{100 * fit.cv_error:.1f} %"
    scales = ", ".join(f"{k} x{v:.3g}" for k, v in fit.scales.items())
    lines.append(f"fit: {fit.method} of the preset ({scales}); in-sample mean |fit/meas - 1| "
                 f"{100 * fit.fit_error:.1f} %, leave-one-out {cv}")
    return "\n".join(lines)

