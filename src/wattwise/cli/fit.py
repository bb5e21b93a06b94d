"""``wattwise fit``: refit the energy model's coefficients to your own measured runs.

How a run becomes a fitting row (documented in docs/energy-model.md):

* The run summary's ``advice`` (written by the callbacks) carries the per-batch model features
  of one forward pass ``E_f``, one backward pass ``E_b`` and one evaluation forward pass
  ``E_f'`` (12 entries each), computed on the hardware hierarchy stored next to them. A run
  summary without ``advice`` (``wattwise sweep`` runs) is rebuilt from the ``sweep.json`` in
  the same folder (widths, input width, batch size) on ``--hardware``.
* ``totals.phases``: ``H_t`` = train batches over the run, ``H_e`` = validate + test batches.
  The row is ``X = H_t·(E_f + E_b) + H_e·E_f'`` with the ``k_e`` entry 0, and the measured
  energy is the sum of those phases' joules (time outside the phases - startup, checkpointing
  - is not in the model). ``--whole-run`` instead fits ``totals.run.joules`` with ``k_e`` = 1.
* Runs whose joules are unknown (null) are left out with a message; runs whose joules are
  estimates (no hardware counter) are left out unless ``--allow-estimates``.
* A BUTTER-style CSV (columns ``dataset, shape, depth, size, is_gpu`` and ``std_energy`` or
  ``energy``; optional ``epochs``, default 3000) gives one row per line through
  :func:`wattwise.model.butter_e.run_feature_row`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

from wattwise.cli._common import CLIError, add_subcommand, check_output_file

EPILOG = """\
examples:
  wattwise fit runs/size-*.json --out coefficients.json
  wattwise fit run1.json run2.json run3.json --hardware gpu --out my-gpu.json
  wattwise fit runs_sample.csv --hardware gpu --out butter-gpu.json   # BUTTER-style CSV rows
  wattwise fit runs/*.json --whole-run --json
  wattwise advise --widths 784,512,10 --coefficients coefficients.json  # use the result
  wattwise fit my_runs/*.json --update-calibration   # refine this machine's calibration

Fit: minimise the sum of squared log(predicted/measured) with every coefficient >= 0, for one
hardware kind (cpu or gpu) at a time. Coefficients whose features are all zero stay 0.
"""


def register(subparsers: Any) -> None:
    """Add the ``fit`` subcommand."""
    p = add_subcommand(
        subparsers,
        "fit",
        help="refit the energy model to your measured runs",
        description="Refit the BUTTER-E energy model's 12 coefficients to measured runs (run "
                    "summaries written by the callbacks or `wattwise sweep`, or BUTTER-style CSV).",
        epilog=EPILOG,
    )
    p.add_argument("runs", nargs="+", metavar="RUN.json|RUNS.csv", help="run summaries or CSV files")
    p.add_argument("--hardware", default=None,
                   help="cpu or gpu: which runs to fit (needed when the inputs mix both); for "
                        "summaries without advice also the hierarchy: auto, cpu, gpu, "
                        "butter-e-cpu, butter-e-gpu (default auto)")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="write the coefficients JSON here (load with --coefficients / coefficients=)")
    p.add_argument("--whole-run", action="store_true",
                   help="fit the whole run's joules (incl. time outside phases) with k_e")
    p.add_argument("--allow-estimates", action="store_true",
                   help="also fit runs whose joules are estimates (not recommended)")
    p.add_argument("--folds", default="5", help="cross-validation folds (default 5; 0 = off)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--update-calibration", action="store_true",
                   help="refit this machine's stored calibration (wattwise calibrate) on its "
                        "points and these runs together, and store it")
    p.set_defaults(func=run)


class _Skip(Exception):
    pass


_FEATURES = ("forward", "backward", "test_forward")


def _phase(totals: dict[str, Any], name: str) -> dict[str, Any] | None:
    rec = (totals.get("phases") or {}).get(name)
    return rec if isinstance(rec, dict) else None


def _shown(value: Any) -> str:
    """A JSON value for a message: ``null``, ``"x"``, ``5``, ``a list``, ``an object``."""
    if isinstance(value, (dict, list)):
        return "a list" if isinstance(value, list) else "an object"
    return f"{json.dumps(value):.60}"


def _is_amount(value: Any) -> bool:
    """A finite number >= 0 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(float(value)) and value >= 0
    except OverflowError:
        return False


def _advice_features(advice: dict[str, Any], name: str) -> tuple[list[tuple[float, ...]], str]:
    """The stored per-pass features (forward, backward, test_forward) and hardware kind of a
    summary's ``advice``; a CLIError naming the field when they are not 12 numbers >= 0 each."""
    feats = advice["features"]
    if not isinstance(feats, dict):
        raise CLIError(f"{name!r}: advice.features is {_shown(feats)}; expected an object with "
                       f"{', '.join(_FEATURES)} (the callbacks write it with advice=True)")
    out = []
    for key in _FEATURES:
        v = feats.get(key)
        if not (isinstance(v, list) and len(v) == 12 and all(_is_amount(x) for x in v)):
            raise CLIError(f"{name!r}: advice.features.{key} is {_shown(v)}; expected a list "
                           "of 12 numbers >= 0 (the callbacks write it with advice=True)")
        out.append(tuple(float(x) for x in v))
    hierarchy = advice.get("hierarchy")
    kind = hierarchy.get("kind") if isinstance(hierarchy, dict) else None
    if kind not in ("cpu", "gpu"):
        raise CLIError(f"{name!r}: advice.hierarchy.kind is {_shown(kind)}; expected \"cpu\" "
                       "or \"gpu\" (the hardware the features were computed on)")
    return out, str(kind)


def summary_row(summary: dict[str, Any], path: Path, hardware: str | None,
                whole_run: bool = False) -> tuple[tuple[float, ...], float, str]:
    """(features, measured joules, hardware kind) of one run summary (checked by
    :func:`wattwise.report.load_summary`); raises _Skip with why, or CLIError for a malformed
    ``advice`` or ``sweep.json``."""
    from wattwise.model.energy import PassFeatures, pass_features

    totals = summary.get("totals") or {}
    train = _phase(totals, "train")
    if not train or not train.get("batches"):
        raise _Skip("no train batches in totals.phases.train")
    evals = [r for r in (_phase(totals, "validate"), _phase(totals, "test")) if r]
    h_t = float(train["batches"])
    h_e = float(sum(r.get("batches") or 0 for r in evals))
    advice = summary.get("advice")
    if isinstance(advice, dict) and "features" in advice:
        (f, b, t), kind = _advice_features(advice, str(path))
    else:
        ws, h = _from_sweep_index(summary, path, hardware)
        pf: PassFeatures = pass_features(ws, h)
        f, b, t = pf.forward, pf.backward, pf.test_forward
        kind = h.kind
    row = [h_t * (fi + bi) + h_e * ti for fi, bi, ti in zip(f, b, t)]
    if not all(math.isfinite(x) for x in row):
        raise _Skip("its model features overflow (batches x features beyond a float)")
    if whole_run:
        run = totals.get("run") or {}
        joules = run.get("joules")
        row[0] = 1.0
    else:
        recs = [train] + evals
        if any(r.get("joules") is None for r in recs):
            raise _Skip("joules unknown (null) for a phase")
        joules = sum(float(r["joules"]) for r in recs)
        row[0] = 0.0
    if joules is None or not 0 < float(joules) < math.inf:
        raise _Skip(f"measured joules {joules!r} not a finite number > 0")
    return tuple(row), float(joules), kind


def _read_sweep_index(index_path: Path) -> dict[str, Any]:
    """``sweep.json`` as a dict whose ``n_in``, ``batch_size`` (integers >= 1) and ``points``
    (a list of objects) are checked; a CLIError naming the file and field otherwise."""
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, RecursionError, json.JSONDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else \
            "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise CLIError(f"{str(index_path)!r}: cannot read the sweep index: {why}") from None
    if not isinstance(index, dict):
        raise CLIError(f"{str(index_path)!r}: is {_shown(index)}; expected the sweep index "
                       "object `wattwise sweep` writes")
    for key in ("n_in", "batch_size"):
        v = index.get(key)
        if not _is_count(v, 1):
            raise CLIError(f"{str(index_path)!r}: {key} is {_shown(v)}; expected an integer >= 1")
    points = index.get("points")
    if not isinstance(points, list) or not all(isinstance(p, dict) for p in points):
        raise CLIError(f"{str(index_path)!r}: points is {_shown(points)}; expected a list of "
                       "objects")
    return index


def _is_count(value: Any, minimum: int = 0) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)
            and minimum <= value <= 10**12)


def _from_sweep_index(summary: dict[str, Any], path: Path, hardware: str | None) -> Any:
    from wattwise.errors import ConfigurationError
    from wattwise.hardware import detect_hierarchy
    from wattwise.model.working_sets import mlp_working_sets

    index_path = path.parent / "sweep.json"
    if not index_path.is_file():
        err = summary.get("advice_error")
        why = (f"the sizing check gave none: {err}" if err else
               "the callbacks store it unless advice=False; summaries without an "
               "advice_error field predate wattwise's warning about a failed check")
        raise _Skip(f"no sizing advice in the summary ({why}) and no sweep.json next to it")
    index = _read_sweep_index(index_path)
    point = next((p for p in index["points"] if p.get("summary") == path.name
                  or any(isinstance(r, dict) and r.get("summary") == path.name
                         for r in (p.get("runs") or []))), None)
    if point is None:
        raise _Skip(f"{path.name!r} is not listed in {index_path}")
    widths = point.get("widths")
    if not (isinstance(widths, list) and widths and all(_is_count(w, 1) for w in widths)):
        raise CLIError(f"{str(index_path)!r}: widths of {path.name!r} is {_shown(widths)}; "
                       "expected a list of integers >= 1")
    fit_epochs = [e for e in summary.get("epochs") or [] if e.get("stage", "fit") == "fit"]
    epochs = max(1, int(summary.get("epochs_completed") or len(fit_epochs) or 1))
    train = _phase(summary.get("totals") or {}, "train") or {}
    n_obs = round((train.get("samples") or 0) / epochs) or None
    try:
        batch = point.get("batch_size", index["batch_size"])  # per point in a batch sweep
        if not _is_count(batch, 1):
            raise CLIError(f"{str(index_path)!r}: batch_size of {path.name!r} is "
                           f"{_shown(batch)}; expected an integer >= 1")
        ws = mlp_working_sets(list(widths), index["n_in"], batch, n_obs=n_obs)
    except ConfigurationError as e:
        raise CLIError(f"{str(index_path)!r}: {e}") from None
    h = detect_hierarchy(hardware or "auto")
    return ws, h


Row = tuple[tuple[float, ...], float, str, str]
"""(features, measured joules, hardware kind cpu/gpu, label) of one run."""


_CSV_LIMITS = {"depth": (2, 20, None), "size": (1, 10**9, None), "epochs": (1, 10**7, 3000)}
"""Integer columns of a BUTTER-style CSV: (least, largest, default when empty or absent)."""


def csv_rows(path: Path) -> list[Row]:
    """(features, joules, kind, label) per line of a BUTTER-style CSV."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return _csv_rows(csv.DictReader(f), path)
    except UnicodeDecodeError as e:
        raise CLIError(f"{str(path)!r}: not UTF-8 text ({e.reason} at byte {e.start}); "
                       "expected a BUTTER-style CSV") from None
    except csv.Error as e:
        raise CLIError(f"{str(path)!r}: not a readable CSV: {e}") from None
    except OSError as e:
        raise CLIError(f"{str(path)!r}: cannot read: {e.strerror or e}") from None


def _csv_int(r: dict[str, Any], col: str) -> int:
    lo, hi, default = _CSV_LIMITS[col]
    text = (r.get(col) or "").strip()
    if not text and default is not None:
        return default
    v = int(text)  # ValueError: reported with the line
    if not lo <= v <= hi:
        raise ValueError(f"{col} {v!r} is not in {lo}..{hi}")
    return v


def _csv_rows(reader: csv.DictReader[str], path: Path) -> list[Row]:
    from wattwise.errors import ConfigurationError
    from wattwise.model.butter_e import run_feature_row

    need = {"dataset", "shape", "depth", "size", "is_gpu"}
    cols = set(reader.fieldnames or ())
    if not need <= cols or not ({"std_energy", "energy"} & cols):
        raise CLIError(f"{str(path)!r}: a BUTTER-style CSV needs columns "
                       f"{sorted(need)} and std_energy or energy; found {sorted(map(str, cols))}")
    col = "std_energy" if "std_energy" in cols else "energy"
    out = []
    for i, r in enumerate(reader, start=2):
        kind = "gpu" if str(r["is_gpu"]).strip().lower() in ("1", "true", "yes") else "cpu"
        try:
            joules = float(r[col] or "")
            if not 0 < joules < math.inf:
                raise ValueError(f"{col} {r[col]!r} is not a finite number of joules > 0")
            row = run_feature_row(str(r["dataset"]), str(r["shape"]), _csv_int(r, "depth"),
                                  _csv_int(r, "size"), kind, _csv_int(r, "epochs"))
        except (ConfigurationError, ValueError) as e:
            raise CLIError(f"{str(path)!r} line {i}: {e}") from None
        out.append((row, joules, kind, f"{path.name}:{i}"))
    return out


def run(args: argparse.Namespace) -> int:
    if args.hardware not in (None, "auto", "cpu", "gpu", "butter-e-cpu", "butter-e-gpu"):
        raise CLIError(f"--hardware {args.hardware!r}: expected cpu, gpu, auto, butter-e-cpu "
                       "or butter-e-gpu")
    try:
        folds = int(args.folds)
    except ValueError:
        folds = -1
    if folds != 0 and not 2 <= folds <= 1000:
        raise CLIError(f"--folds {args.folds!r}: expected 0 (off) or an integer in 2..1000")
    if args.out:
        check_output_file("--out", args.out)
    rows, skipped = _collect_rows(args)
    for s in skipped:
        print(f"wattwise fit: skipped {s}", file=sys.stderr)
    rows = _one_kind(rows, args.hardware)
    if not rows:
        raise CLIError("no usable runs to fit" + (f" ({len(skipped)} skipped, see above)"
                                                  if skipped else ""))
    if args.update_calibration:
        return _update_calibration(rows, args)
    result, cv = _fit(rows, folds)
    if args.out:
        from wattwise.sizing import save_coefficients

        try:
            save_coefficients(result.coefficients, args.out)
        except OSError as e:
            raise CLIError(f"--out {args.out!r}: cannot write: {e.strerror or e}") from None
    if args.json:
        j = result.to_json()
        j["cross_validated_mean_abs_error"] = cv
        j["skipped"] = skipped
        print(json.dumps(j, indent=2))
    else:
        _print_result(result, cv, n_rows=len(rows), folds=folds, out=args.out)
    return 0


def _update_calibration(rows: list[Row], args: argparse.Namespace) -> int:
    """Refit this machine's calibration on its stored points plus ``rows`` and store it."""
    from wattwise.calibration import load_calibration, make_calibration, save_calibration
    from wattwise.cli._common import warnings_to_stderr
    from wattwise.errors import ConfigurationError
    from wattwise.hardware import detect_hierarchy

    if args.hardware not in (None, "auto"):
        raise CLIError(f"--hardware {args.hardware!r} with --update-calibration: the calibration "
                       "is this machine's; leave --hardware out")
    with warnings_to_stderr("fit"):
        h = detect_hierarchy("auto")
        old = load_calibration(h)
    mine = [r for r in rows if r[2] == h.kind]
    if not mine:
        raise CLIError(f"no {h.kind.upper()} run to add to this machine's calibration")
    points = list(old.points) if old is not None else []
    X = [p[0] for p in points] + [r[0] for r in mine]
    E = [p[1] for p in points] + [r[1] for r in mine]
    estimated = bool(args.allow_estimates) or (old is not None and old.energy == "estimated")
    meters = list(old.meters) if old is not None else []
    try:
        cal, fit = make_calibration(X, E, h, meters=meters + ["runs"], energy=(
            "estimated" if estimated else "measured"),
            what=f"stored + {len(mine)} user run")
        path = save_calibration(cal, h)
    except ConfigurationError as e:
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot write the calibration: {e.strerror or e}") from None
    cv = "n/a (under 3 points)" if fit.cv_error is None else f"{100 * fit.cv_error:.1f} %"
    print(f"refitted this machine's calibration on {len(points)} stored point(s) and "
          f"{len(mine)} run(s): {fit.method}, in-sample mean |pred/meas - 1| "
          f"{100 * fit.fit_error:.1f} %, leave-one-out {cv}")
    print(f"stored: {path}")
    print(f"coefficients: {cal.label}")
    return 0


def _collect_rows(args: argparse.Namespace) -> tuple[list[Row], list[str]]:
    """The fitting rows of every input file, and why each left-out run was left out."""
    from wattwise.errors import ConfigurationError
    from wattwise.report import load_summary

    rows: list[Row] = []
    skipped: list[str] = []
    for name in args.runs:
        path = Path(name)
        if not path.is_file():
            raise CLIError(f"{name!r}: no such file")
        if path.suffix.lower() == ".csv":
            rows.extend(csv_rows(path))
            continue
        summary = load_summary(path)
        if summary.get("estimated") and not args.allow_estimates:
            skipped.append(f"{name}: joules are estimates (no hardware counter); "
                           "--allow-estimates to use anyway")
            continue
        try:
            row, joules, kind = summary_row(summary, path, args.hardware, args.whole_run)
        except _Skip as e:
            skipped.append(f"{name}: {e}")
            continue
        except ConfigurationError as e:
            raise CLIError(f"{name!r}: {e}") from None
        rows.append((row, joules, kind, name))
    return rows, skipped


def _one_kind(rows: list[Row], hardware: str | None) -> list[Row]:
    """The rows of the hardware kind asked for; an error when they mix kinds and none was."""
    kinds = sorted({r[2] for r in rows})
    want = {"butter-e-cpu": "cpu", "butter-e-gpu": "gpu"}.get(hardware or "", hardware)
    if want in ("cpu", "gpu"):
        return [r for r in rows if r[2] == want]
    if len(kinds) > 1:
        raise CLIError(f"the runs mix hardware kinds {kinds}; fit one at a time with "
                       "--hardware cpu or --hardware gpu")
    return rows


def _fit(rows: list[Row], folds: int) -> tuple[Any, float | None]:
    """(fit result, cross-validated mean |pred/meas - 1| or None) for rows of one kind."""
    from wattwise.errors import ConfigurationError
    from wattwise.model.fit import cross_validate, fit_coefficients

    kind = rows[0][2]
    X = [r[0] for r in rows]
    E = [r[1] for r in rows]
    try:
        result = fit_coefficients(X, E, kind, source=f"wattwise fit on {len(rows)} run(s)")
        cv = cross_validate(X, E, kind, folds=min(folds, len(rows))) \
            if folds >= 2 and len(rows) >= 3 else None
    except ImportError as e:
        raise CLIError(f"fitting needs scipy (pip install 'wattwise[model]'): {e}") from None
    except ConfigurationError as e:
        raise CLIError(str(e)) from None
    return result, cv


def _print_result(result: Any, cv: float | None, *, n_rows: int, folds: int,
                  out: str | None) -> None:
    from wattwise.model.coefficients import COEFFICIENT_NAMES

    c = result.coefficients
    print(f"fitted {n_rows} {c.hardware.upper()} run(s); free coefficients: "
          f"{', '.join(result.free)}")
    if n_rows < len(result.free):
        print(f"WARNING: fewer runs ({n_rows}) than free coefficients ({len(result.free)}): "
              "the fit is underdetermined; measure more sizes (wattwise sweep)")
    print(f"in-sample mean |pred/meas - 1|: {100 * result.mean_abs_error:.2f} %  "
          f"(rms log ratio {result.rms_log_error:.4f})")
    if cv is not None:
        print(f"{min(folds, n_rows)}-fold cross-validated mean |pred/meas - 1|: {100 * cv:.2f} %")
    units = {"k_e": "J/run", "k_p": "J/pass", "k_o": "J/GFLOP", "k_d": "J/layer/pass"}
    for n, v in zip(COEFFICIENT_NAMES, c.values):
        u = units.get(n, "J/access" if n.startswith("a") else "J/MiB")
        print(f"  {n:4} = {v:.6g} {u}")
    if out:
        print(f"wrote {out} (use: wattwise advise ... --coefficients {out})")
