"""Entry point of the ``wattwise`` command.

Each subcommand lives in its own module ``wattwise.cli.<name>`` that defines
``register(subparsers) -> None``; the parser it adds sets ``func`` (called with the parsed
namespace, returns an exit code). Subcommand modules import heavy stacks only inside ``func``.
Errors: raise :class:`~wattwise.cli._common.CLIError` (or a :class:`~wattwise.errors.WattwiseError`) for a one-line
message and exit code 2 - never a traceback. Argument errors are one line too
(:class:`~wattwise.cli._common.OneLineParser`). A closed stdout (``wattwise report --csv - |
head -1``) ends the command quietly with exit code 141 (128 + SIGPIPE, as a shell reports for
a Unix tool that a closed pipe stopped).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from wattwise.cli._common import CLIError, OneLineParser
from wattwise.errors import WattwiseError

__all__ = ["CLIError", "SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = ("demo", "probe", "advise", "report", "fit", "sweep", "calibrate", "run")
EXIT_BROKEN_PIPE = 141
"""Exit code when stdout is closed early (128 + SIGPIPE, what a shell shows for ``cat``)."""


EPILOG = """\
examples:
  wattwise demo                          train a small MLP, print its energy and sizing advice
  wattwise probe                         which energy counters this machine can read, and why not
  wattwise report RUN.json --plot e.png  per-epoch tables, CSV and plots from run summaries
  wattwise sweep --epochs 2              J/sample against network size and the cache boundaries
  wattwise advise --widths 784,512,10    sizing advice for an MLP (energy-model estimates)
  wattwise fit RUN.json ... --out c.json refit the energy model to your own runs
  wattwise calibrate --quick             fit the energy model to this machine, stored for the advice
  wattwise run -- python train.py        the energy of a whole command, as a run summary

Run `wattwise COMMAND --help` for each command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
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
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except (CLIError, WattwiseError) as e:
        print(f"wattwise {args.command}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"wattwise {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _one_line(error: BaseException) -> str:
    """The error's message on one line (a JSON decoder's or OS message may hold newlines)."""
    return " ".join(str(error).split())


def _silence_stdout() -> None:
    """After a closed pipe: point stdout at /dev/null so that the interpreter's final flush
    does not print a second error (the recipe in Python's ``signal`` docs)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a test's capture: nothing to do
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
