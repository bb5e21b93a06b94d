"""The one exception and warning hierarchy of wattwise.

Every error message names the class and argument, shows the received value with ``!r``,
says what was expected and how to fix it. Vendor errors are translated once, here or at
the meter edge, with ``raise ... from e``.
"""

from __future__ import annotations

__all__ = [
    "WattwiseError",
    "ConfigurationError",
    "MeterError",
    "MeterUnavailableError",
    "MeterReadError",
    "WattwiseWarning",
    "MeterWarning",
    "EstimateWarning",
    "SizingWarning",
]


class WattwiseError(Exception):
    """Base class of every error wattwise raises."""


class ConfigurationError(WattwiseError, ValueError):
    """An argument has a value wattwise cannot use (raised at construction)."""


class MeterError(WattwiseError):
    """Base class of meter errors."""


class MeterUnavailableError(MeterError):
    """A meter cannot be opened on this machine (no hardware, no library, no permission).

    The message says why and how to fix it.
    """


class MeterReadError(MeterError):
    """A meter that was open failed to read (the tracker reports it once and drops the meter)."""


class WattwiseWarning(UserWarning):
    """Base class of every warning wattwise emits."""


class MeterWarning(WattwiseWarning):
    """A meter was unavailable or failed; measurement continues without it."""


class EstimateWarning(WattwiseWarning):
    """Numbers are estimates (no hardware counter was readable)."""


class SizingWarning(WattwiseWarning):
    """The energy model found the network's working set far from a cache boundary."""
