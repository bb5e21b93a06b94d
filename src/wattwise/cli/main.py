"""Entry point of the ``wattwise`` command.

Each subcommand lives in its own module ``wattwise.cli.<name>`` that defines
``register(subparsers) -> None``; the parser it adds sets ``func`` (called with the parsed
namespace, returns an exit code). Subcommand modules import heavy stacks only inside ``func``.
Errors: raise :class:`~wattwise.cli._common.CLIError` (or a :class:`~wattwise.errors.WattwiseError`) for a one-line
message and exit code 2 - never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from wattwise.cli._common import CLIError
from wattwise.errors import WattwiseError

__all__ = ["CLIError", "SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = ("demo", "probe", "advise", "report", "fit", "sweep")


EPILOG = """\
examples:
  wattwise demo                          train a small MLP, print its energy and sizing advice
  wattwise probe                         which energy counters this machine can read, and why not
  wattwise report RUN.json --plot e.png  per-epoch tables, CSV and plots from run summaries
  wattwise sweep --epochs 2              J/sample against network size and the cache boundaries
  wattwise advise --widths 784,512,10    sizing advice for an MLP (energy-model estimates)
  wattwise fit RUN.json ... --out c.json refit the energy model to your own runs

Run `wattwise COMMAND --help` for each command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wattwise",
        description="Energy per training sample and per epoch, and cache-aware sizing advice.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from wattwise import __version__

    parser.add_argument("--version", action="version", version=f"wattwise {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"wattwise.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (CLIError, WattwiseError) as e:
        print(f"wattwise {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wattwise {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
