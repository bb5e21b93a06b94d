"""Accuracy of wattwise's embedded BUTTER-E energy model on the shared run sample.

Prints, for GPU and CPU, the mean |predicted/measured - 1| (and the geometric-mean ratio) of
the paper's coefficients (Table 4 / 3000 except k_e) on ``runs_sample.csv`` (measured:
``std_energy``), with and without the inter-layer count shift, the refit's in-sample and 5-fold
cross-validated error, next to the paper's own figures (GPU ±2.74 %, CPU ±20.2 %); then the
paper's and the refitted coefficients, and which one ``preset("cpu" | "gpu")`` defaults to.
With ``--print-refit``: also the refit as the ``REFIT`` constants of
``wattwise.model.coefficients`` (6 significant digits, values below 1e-9 J as 0).

Run:  WATTWISE_SHARED=../shared .venv/bin/python benchmarks/model_accuracy.py [--print-refit]
"""

from __future__ import annotations

import csv
import math
import os
import sys
from pathlib import Path

from wattwise.model.butter_e import run_feature_row
from wattwise.model.coefficients import COEFFICIENT_NAMES, DEFAULT_PRESETS, preset
from wattwise.model.energy import ModelOptions
from wattwise.model.fit import cross_validate, fit_coefficients, mean_abs_error

PAPER = {"gpu": 0.0274, "cpu": 0.202}


def _rounded(v: float) -> float:
    return 0.0 if v < 1e-9 else float(f"{v:.6g}")


def main(argv: list[str]) -> int:
    shared = Path(os.environ.get("WATTWISE_SHARED") or Path(__file__).resolve().parents[1] / ".." / "shared")
    path = shared / "data" / "butter_e" / "runs_sample.csv"
    if not path.is_file():
        print(f"runs_sample.csv not found at {path}; set WATTWISE_SHARED", file=sys.stderr)
        return 2
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    print(f"data: {path} ({len(rows)} runs; measured = std_energy, joules)")
    print(f"{'hardware':8} {'runs':>4} {'variant':28} {'mean |pred/meas-1|':>19} {'geo-mean ratio':>15} {'paper':>8}")
    refits = {}
    for hw in ("gpu", "cpu"):
        sub = [r for r in rows if r["is_gpu"] == ("1" if hw == "gpu" else "0")]
        E = [float(r["std_energy"]) for r in sub]
        for label, opts in (("paper coefficients", ModelOptions()),
                            ("+ shifted inter-layer count", ModelOptions(shift_inter_layer_counts=True))):
            X = [run_feature_row(r["dataset"], r["shape"], int(r["depth"]), int(r["size"]), hw,
                                 options=opts) for r in sub]
            k = preset(f"paper-{hw}").values
            ratios = [sum(a * b for a, b in zip(x, k)) / e for x, e in zip(X, E)]
            mae = sum(abs(q - 1) for q in ratios) / len(ratios)
            gm = math.exp(sum(math.log(q) for q in ratios) / len(ratios))
            print(f"{hw:8} {len(sub):4d} {label:28} {100 * mae:18.2f}% {gm:15.3f} {100 * PAPER[hw]:7.2f}%")
        X = [run_feature_row(r["dataset"], r["shape"], int(r["depth"]), int(r["size"]), hw) for r in sub]
        fit = fit_coefficients(X, E, hw)
        cv = cross_validate(X, E, hw, folds=5)
        print(f"{hw:8} {len(sub):4d} {'refit, in-sample':28} {100 * fit.mean_abs_error:18.2f}% {'':>15} {'':>8}")
        print(f"{hw:8} {len(sub):4d} {'refit, 5-fold cross-valid.':28} {100 * cv:18.2f}% {'':>15} {'':>8}")
        stored = preset(f"refit-{hw}")
        print(f"{hw:8} {len(sub):4d} {'stored refit preset':28} "
              f"{100 * mean_abs_error(X, E, stored):18.2f}% {'':>15} {'':>8}")
        refits[hw] = (fit, cv, len(sub))
    print()
    print(f"{'coefficient':12} {'paper-cpu':>12} {'refit-cpu':>12} {'paper-gpu':>12} {'refit-gpu':>12}")
    for j, name in enumerate(COEFFICIENT_NAMES):
        vals = [preset(f"{o}-{hw}").values[j] for hw in ("cpu", "gpu") for o in ("paper", "refit")]
        print(f"{name:12} " + " ".join(f"{v:12.6g}" for v in vals))
    for hw in ("cpu", "gpu"):
        p, r = preset(f"paper-{hw}"), preset(f"refit-{hw}")
        print(f"{hw}: paper {100 * (p.cv_error or 0):.2f} % (on the sample, not fitted on it), "
              f"refit {100 * (r.cv_error or 0):.2f} % (5-fold CV) -> preset({hw!r}) = "
              f"{DEFAULT_PRESETS[hw]!r}")
    if "--print-refit" in argv:
        print("\nREFIT = {")
        for hw in ("cpu", "gpu"):
            fit, cv, n = refits[hw]
            vals = ", ".join(repr(_rounded(v)) for v in fit.coefficients.values)
            print(f'    "{hw}": {{"values": ({vals}),\n'
                  f'            "fit_error": {fit.mean_abs_error:.4f}, "cv_error": {cv:.4f}, '
                  f'"n_runs": {n}}},')
        print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
