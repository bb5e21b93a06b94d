"""``wattwise run -- COMMAND ...``: the energy of a whole command, as a run summary.

The command runs as a child process with this one's stdin, stdout and stderr; SIGTERM and
SIGHUP are passed on to it, and SIGINT too unless wattwise runs in the foreground of a
terminal (there Ctrl-C already reaches the command, and a second one would hit its clean-up).
Measured: the node's meters and the GPUs this process can see (``--meters auto``), read at the
start, every ``--interval`` seconds (so no counter wraps unseen) and at the end. Everything is
the run's ``other`` time: the command has no phases, so no J/sample. The exit code is the
command's, 128 + N when a signal N ended it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import FrameType
from typing import Any

from wattwise.cli._common import CLIError, add_subcommand, check_output_file, meters_arg
from wattwise.meters.factory import METER_NAMES

EPILOG = """\
examples:
  wattwise run -- python train.py --epochs 3       summary in ./wattwise_runs/run-<time>.json
  wattwise run --summary energy.json -- ./train.sh
  wattwise run --meters rapl nvml --run-name bert -- torchrun --nproc-per-node 2 train.py

The exit code is the command's (128 + N when signal N ended it); the run table goes to stderr.
"""

#: Exit codes when the command cannot be started, as a shell reports them.
EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE = 127, 126
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand."""
    p = add_subcommand(
        subparsers, "run",
        help="measure the energy of a whole command (like `codecarbon monitor`)",
        description=(
            "Runs COMMAND with the same stdin, stdout and stderr, measures the energy of the "
            "node (RAPL, codecarbon) and of the GPUs it can see (NVML) while it runs, writes a "
            "run summary and prints the run table to stderr. Exits with the command's exit code."
        ),
        epilog=EPILOG,
    )
    p.add_argument("--summary", default=None, metavar="FILE",
                   help="run summary JSON (default ./wattwise_runs/run-<YYYYmmdd-HHMMSS>.json)")
    p.add_argument("--meters", nargs="+", default=["auto"], metavar="NAME",
                   help=f"auto (default) or meter names: {' '.join(METER_NAMES)}")
    p.add_argument("--run-name", default=None, metavar="NAME",
                   help="the run's name in the summary (default: the command's program name)")
    p.add_argument("--interval", type=float, default=10.0, metavar="S",
                   help="seconds between meter readings while the command runs (default 10)")
    p.add_argument("--quiet", action="store_true", help="print no run table")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the command to run, after `--`")
    p.set_defaults(func=run)


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        raise CLIError("no command given; usage: wattwise run [OPTIONS] -- COMMAND [ARGS ...]")
    if cmd[0].startswith("-"):
        raise CLIError(f"unknown option {cmd[0]!r}; put the command after `--` "
                       "(see `wattwise run --help`)")
    return cmd


def _summary_path(option: str | None) -> str:
    if option is not None:
        check_output_file("--summary", option)
        return option
    folder = Path("wattwise_runs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"cannot create {str(folder)!r} for the run summary: "
                       f"{e.strerror or e}; pass --summary FILE") from None
    return str(folder / f"run-{time.strftime('%Y%m%d-%H%M%S')}.json")


def _forward_sigint() -> bool:
    """False when this process is the foreground of its terminal: Ctrl-C reaches the child
    (same process group) without us."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) != os.getpgrp()
    except (OSError, ValueError, AttributeError):  # no terminal
        return True


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _warning_line(message: Any, category: Any, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    print(f"wattwise run: warning: {message}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the command, measured; returns its exit code."""
    with warnings.catch_warnings():  # one line each, at once (the command may run for hours)
        warnings.showwarning = _warning_line
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from wattwise.config import TrackerConfig
    from wattwise.console import format_run_table
    from wattwise.errors import ConfigurationError
    from wattwise.tracker import EnergyTracker

    cmd = _command(args)
    if not (args.interval > 0 and args.interval < float("inf")):
        raise CLIError(f"--interval {args.interval!r}: expected a number of seconds > 0, e.g. 10")
    meters = meters_arg(args.meters)
    exe = shutil.which(cmd[0])
    if exe is None:
        why = "is not executable" if os.path.exists(cmd[0]) else "was not found"
        print(f"wattwise run: error: command {cmd[0]!r} {why}", file=sys.stderr)
        return EXIT_NOT_EXECUTABLE if os.path.exists(cmd[0]) else EXIT_NOT_FOUND
    path = _summary_path(args.summary)
    try:
        config = TrackerConfig(meters=meters, summary_path=path, min_window_s=0.0,
                               run_name=args.run_name or os.path.basename(cmd[0]),
                               on_error="warn", owner="wattwise run")
    except ConfigurationError as e:
        raise CLIError(str(e)) from None
    tracker = EnergyTracker(config=config)
    tracker.start(metadata={"command": cmd, "cwd": os.getcwd()})  # a named meter may raise
    received: list[int] = []
    proc: subprocess.Popen[bytes] | None = None
    forward_int = _forward_sigint()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if proc is not None and proc.poll() is None and (signum != signal.SIGINT or forward_int):
            proc.send_signal(signum)

    previous = {s: signal.signal(s, on_signal) for s in _FORWARDED}
    try:
        try:
            proc = subprocess.Popen(cmd)
        except OSError as e:
            tracker.finish("failed", e)
            print(f"wattwise run: error: cannot start {cmd[0]!r}: {e.strerror or e}",
                  file=sys.stderr)
            return EXIT_NOT_EXECUTABLE
        while True:
            try:
                code = proc.wait(timeout=args.interval)
                break
            except subprocess.TimeoutExpired:
                tracker.step_reading()  # a reading: counters never wrap twice unseen
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if proc is not None and proc.poll() is None:  # wattwise itself was stopped
            proc.kill()
            proc.wait()
    exit_code = 128 - code if code < 0 else code
    if code == 0:
        summary = tracker.finish("completed")
    else:
        by_signal = -code if code < 0 else None
        interrupted = by_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP) or bool(received)
        what = (f"the command was ended by signal {_signal_name(by_signal)}" if by_signal
                else f"the command exited with code {code}")
        summary = tracker.finish("interrupted" if interrupted else "failed",
                                 ChildProcessError(what))
    if not args.quiet:
        print(format_run_table(summary), file=sys.stderr)
    print(f"wattwise run: exit code {exit_code}; run summary in {path}", file=sys.stderr)
    return exit_code
