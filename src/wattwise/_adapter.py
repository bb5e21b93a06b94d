"""What the Lightning and Keras callbacks share, free of any framework.

The rules every adapter follows: a failure in measurement is reported once and measurement
stops, training goes on and what was measured is kept (:meth:`AdapterMixin._guard`); the run
table is printed on rank 0 only (:meth:`AdapterMixin._print`); rank N > 0 writes its own
summary file beside rank 0's (:func:`rank_summary_path`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from wattwise.errors import MeterWarning

log = logging.getLogger("wattwise")


class AdapterMixin:
    """Failure reporting and the console table, for the callbacks' implementation classes."""

    _broken: bool
    _print_summary: bool
    _global_rank: int

    def _guard(self, what: str, exc: BaseException) -> None:
        """Measurement never kills training: report once, stop measuring, keep what we have."""
        if not self._broken:
            warnings.warn(
                f"EnergyMonitor: {what} failed ({type(exc).__name__}: {exc}); energy measurement "
                "stops here, training continues and what was measured is kept",
                MeterWarning,
                stacklevel=3,
            )
            log.info("EnergyMonitor: %s failed: %r", what, exc)  # the warning above prints
        self._broken = True

    def _print(self, summary: Mapping[str, Any] | None) -> None:
        """The run table (``wattwise.console.format_run_table``) on rank 0, if asked for."""
        if not self._print_summary or summary is None or self._global_rank != 0:
            return
        try:
            from wattwise.console import format_run_table

            print(format_run_table(summary))
        except Exception as e:  # noqa: BLE001 - a table never breaks training
            log.debug("EnergyMonitor: console table failed: %r", e)


def rank_summary_path(
    path: str | PathLike[str] | None, global_rank: int
) -> str | PathLike[str] | None:
    """Rank 0 writes ``path``; rank N writes ``<stem>.rankN<suffix>`` beside it."""
    if path is None or global_rank == 0:
        return path
    p = Path(path)
    return p.with_name(f"{p.stem}.rank{global_rank}{p.suffix}")
