"""What the ``wattwise`` subcommands share: the error type, parser setup and argument checks.

Every check raises :class:`CLIError` with the option, the value received (``!r``) and what was
expected; :func:`wattwise.cli.main.main` prints it as one line and exits with code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from wattwise.meters.factory import METER_NAMES

__all__ = [
    "SEED_MAX",
    "CLIError",
    "OneLineParser",
    "add_training_options",
    "add_subcommand",
    "check_int_range",
    "check_output_file",
    "check_training_args",
    "make_out_dir",
    "meters_arg",
    "seed_arg",
    "warnings_to_stderr",
]

SEED_MAX = 2**32 - 1
"""The largest ``--seed``: NumPy's and Lightning's seeds are unsigned 32-bit integers."""


class CLIError(Exception):
    """A user error: printed as one line ``wattwise <cmd>: error: ...``, exit code 2."""


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (no usage block), exit code 2.

    Subcommand parsers made with ``add_subparsers`` inherit the class.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def seed_arg(text: str) -> int:
    """``--seed``: an integer in 0..2**32-1, checked while the arguments are parsed."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer in 0..{SEED_MAX}")
    return value


def add_subcommand(
    subparsers: Any, name: str, *, help: str, description: str, epilog: str
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` with its one-line help, description and examples epilog."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=help,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_training_options(p: argparse.ArgumentParser, prefix: str) -> None:
    """The options of the commands that train (demo, sweep): ``--batch-size``, ``--meters``,
    ``--rapl-root``, ``--out`` (default ``./wattwise_runs/<prefix>-<timestamp>``), ``--seed``."""
    p.add_argument("--batch-size", type=int, default=64, metavar="B",
                   help="batch size (default 64)")
    p.add_argument("--meters", nargs="+", default=["auto"], metavar="NAME",
                   help=f"auto (default) or meter names: {' '.join(METER_NAMES)}")
    p.add_argument("--rapl-root", default=None, metavar="DIR",
                   help="read RAPL from this powercap folder instead of /sys/class/powercap "
                        "(e.g. a container's mount point); implies --meters rapl unless given")
    p.add_argument("--out", default=None, metavar="DIR",
                   help=f"output folder (default ./wattwise_runs/{prefix}-<timestamp>)")
    p.add_argument("--seed", type=seed_arg, default=0, metavar="S",
                   help=f"random seed, 0..{SEED_MAX} (default 0)")


def meters_arg(names: Sequence[str], rapl_root: str | None = None) -> Any:
    """Validate ``--meters``: ``["auto"]`` -> ``"auto"``, else the list of names.

    With ``rapl_root``, RAPL is a ``RaplMeter(root=rapl_root)`` instance (``auto`` -> just it).
    """
    if rapl_root is not None:
        from wattwise.meters import RaplMeter

        names = ["rapl"] if list(names) == ["auto"] else list(names)
        if "rapl" not in names:
            raise CLIError(f"--rapl-root {rapl_root!r} given but --meters does not include rapl")
        meters_arg(names)  # validate the names
        return [RaplMeter(root=rapl_root) if n == "rapl" else n for n in names]
    for n in names:
        if n != "auto" and n not in METER_NAMES:
            raise CLIError(f"--meters: unknown meter {n!r}; choose auto or from "
                           f"{', '.join(METER_NAMES)}")
    if "auto" in names:
        if len(names) > 1:
            raise CLIError(f"--meters {' '.join(names)!r}: 'auto' cannot be combined with names")
        return "auto"
    return list(names)


def check_int_range(option: str, value: int, lo: int, hi: int, hint: str = "") -> None:
    """Raise unless ``lo <= value <= hi``; ``hint`` is appended (e.g. ``", e.g. 3"``)."""
    if not lo <= value <= hi:
        raise CLIError(f"{option} {value!r}: expected an integer in {lo}..{hi}{hint}")


def check_training_args(args: argparse.Namespace, *, max_epochs: int) -> None:
    """Check ``--epochs`` (1..``max_epochs``) and ``--batch-size`` (1..100000)."""
    check_int_range("--epochs", args.epochs, 1, max_epochs)
    check_int_range("--batch-size", args.batch_size, 1, 100_000)


def make_out_dir(out: str | None, prefix: str) -> Path:
    """Create the ``--out`` folder; default ``./wattwise_runs/<prefix>-<YYYYmmdd-HHMMSS>``."""
    path = Path(out) if out else Path("wattwise_runs") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"--out {str(path)!r}: cannot create the folder: {e.strerror or e}") from None
    return path


def check_output_file(option: str, path: str, *, plot: bool = False) -> None:
    """Fail at once, before any work, when ``path`` cannot be written: its folder is missing or
    not a folder, or ``path`` is a folder; with ``plot``, also a file type matplotlib cannot
    write (``.png``, ``.pdf``, ``.svg``, ...)."""
    p = Path(path)
    parent = p.parent
    if p.is_dir():
        raise CLIError(f"{option} {path!r}: is a folder; give a file name")
    if not parent.is_dir():
        why = "is not a folder" if parent.exists() else "does not exist"
        raise CLIError(f"{option} {path!r}: the folder {str(parent)!r} {why}; create it first")
    if plot:
        suffix = p.suffix.lower().lstrip(".")
        kinds = _plot_file_types()
        if kinds and suffix not in kinds:
            raise CLIError(f"{option} {path!r}: cannot draw a {suffix or 'suffix-less'!r} file; "
                           f"give one of .{', .'.join(sorted(kinds))}")


def _plot_file_types() -> set[str]:
    """The file suffixes matplotlib can write; empty when matplotlib is missing (the command
    that plots says so)."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        return set()
    return set(FigureCanvasBase.get_supported_filetypes())


@contextmanager
def warnings_to_stderr(command: str) -> Iterator[None]:
    """Print the warnings raised inside as ``wattwise <command>: warning: ...`` lines (after the
    block, and only when it did not raise)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:  # only when the block succeeded: an error stays one line
        print(f"wattwise {command}: warning: {w.message}", file=sys.stderr)
