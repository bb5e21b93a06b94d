"""``wattwise report``: tables, CSV and plots from one or more run summaries."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from wattwise.cli._common import CLIError, add_subcommand, check_output_file

EPILOG = """\
examples:
  wattwise report wattwise_runs/demo-20250101-120000/summary.json
  wattwise report run_a/summary.json run_b/summary.json          # side by side
  wattwise report run.json --csv energy.csv --plot energy.png
  wattwise report run.json --csv -                               # CSV to stdout
"""


def register(subparsers: Any) -> None:
    """Add the ``report`` subcommand."""
    p = add_subcommand(
        subparsers,
        "report",
        help="tables, CSV and plots from run summaries",
        description=(
            "Per run, per epoch and phase: joules, joules per sample, watts, seconds, and "
            "whether the numbers are measured or estimated. Several runs are also shown "
            "side by side."
        ),
        epilog=EPILOG,
    )
    p.add_argument("runs", nargs="+", metavar="RUN.json",
                   help="run summary files written by EnergyMonitor / EnergyTracker")
    p.add_argument("--csv", metavar="FILE", default=None,
                   help="also write all rows as CSV to FILE ('-' = stdout, tables then omitted)")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="draw a figure to FILE.png: energy per epoch, J/sample per epoch, "
                        "J/sample per phase; runs by name, estimates dashed/hatched")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from wattwise.report import format_report, load_summary, report_rows, run_labels, write_csv

    if args.csv not in (None, "-"):
        check_output_file("--csv", args.csv)
    if args.plot is not None:
        check_output_file("--plot", args.plot, plot=True)
    summaries = [load_summary(p) for p in args.runs]
    if args.csv != "-":
        print(format_report(summaries))
    if args.csv is not None:
        rows = [r for s, lab in zip(summaries, run_labels(summaries)) for r in report_rows(s, lab)]
        if args.csv == "-":
            write_csv(rows, sys.stdout)
        else:
            try:
                with open(args.csv, "w", encoding="utf-8", newline="") as f:
                    n = write_csv(rows, f)
            except OSError as e:
                raise CLIError(f"--csv {args.csv!r}: cannot write: {e.strerror or e}") from None
            print(f"\nwrote {n} rows to {args.csv}")
    if args.plot is not None:
        from wattwise.report import plot_runs

        out = plot_runs(summaries, args.plot)
        print(f"wrote plot to {out}", file=sys.stderr if args.csv == "-" else sys.stdout)
    return 0
