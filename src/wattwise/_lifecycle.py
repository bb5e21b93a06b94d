"""No summary is left at ``"running"``: a stage still running when an uncaught exception ends
the process is recorded as ``"failed"`` (``"interrupted"`` for KeyboardInterrupt) with the
error; one still running at interpreter exit as ``"interrupted"``.

Keras has no exception hook, so this is how a Keras run that raises gets its status. The hook
chains to whatever ``sys.excepthook`` was before, and is installed once, on first use.
"""

from __future__ import annotations

import atexit
import sys
from types import TracebackType
from typing import Any

from wattwise.errors import WattwiseError

_live: dict[int, Any] = {}  # trackers with a running stage (held: a local monitor counts)
_installed = False


def watch(tracker: Any) -> None:
    """``tracker`` has a running stage (it has ``end_stage(status, error)``)."""
    global _installed
    _live[id(tracker)] = tracker
    if not _installed:
        _installed = True
        previous = sys.excepthook

        def hook(tp: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
            _end_all(ended_status(value), value)
            previous(tp, value, tb)

        sys.excepthook = hook
        atexit.register(_at_exit)


def unwatch(tracker: Any) -> None:
    _live.pop(id(tracker), None)


def _end_all(status: str, error: BaseException) -> None:
    for tracker in list(_live.values()):
        try:
            tracker.end_stage(status, error)
        except Exception:  # noqa: BLE001, S110 - the process is ending; never raise here
            pass


def _at_exit() -> None:
    _end_all("interrupted", WattwiseError("the process exited while this stage was running"))


def prefetch(*modules: str) -> None:
    """Import ``modules`` on a daemon thread (the sizing check's model code, ~10 ms on a
    laptop CPU): started at fit start, done before the first batch needs it, so the import is
    not on the training thread's path. Failures are left for the real import to report."""
    import importlib
    import sys
    import threading

    missing = [m for m in modules if m not in sys.modules]
    if not missing:
        return

    def run() -> None:
        for m in missing:
            try:
                importlib.import_module(m)
            except Exception:  # noqa: BLE001, S112 - the training thread's import reports it
                continue

    threading.Thread(target=run, name="wattwise-prefetch", daemon=True).start()


def ended_status(error: BaseException | None) -> str:
    """How a stage that ``error`` ended is recorded: ``"completed"`` without one,
    ``"interrupted"`` for Ctrl-C (``KeyboardInterrupt``), else ``"failed"``."""
    if error is None:
        return "completed"
    return "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
