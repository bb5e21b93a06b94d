"""wattwise: energy per training sample and per epoch, from real hardware counters.

``import wattwise`` imports no training framework, no pynvml and no codecarbon; those load
only when a meter or adapter that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wattwise._version import __version__
from wattwise.errors import (
    ConfigurationError,
    EstimateWarning,
    MeterError,
    MeterReadError,
    MeterUnavailableError,
    MeterWarning,
    SizingWarning,
    WattwiseError,
    WattwiseWarning,
)

if TYPE_CHECKING:
    from wattwise.config import TrackerConfig
    from wattwise.measuring import measure
    from wattwise.meters.base import Meter, Reading
    from wattwise.records import EpochRecord, PhaseRecord, StepRecord
    from wattwise.report import RunSummary, load_summary
    from wattwise.tracker import EnergyTracker

#: the rest of the API, imported on first use (an adapter imports only the modules it needs:
#: ~2 ms less inside a user's fit than importing all of it)
_LAZY = {
    "TrackerConfig": "wattwise.config",
    "measure": "wattwise.measuring",
    "Meter": "wattwise.meters.base",
    "Reading": "wattwise.meters.base",
    "EpochRecord": "wattwise.records",
    "PhaseRecord": "wattwise.records",
    "StepRecord": "wattwise.records",
    "RunSummary": "wattwise.report",
    "load_summary": "wattwise.report",
    "EnergyTracker": "wattwise.tracker",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wattwise' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "__version__",
    "EnergyTracker",
    "measure",
    "TrackerConfig",
    "PhaseRecord",
    "EpochRecord",
    "StepRecord",
    "RunSummary",
    "load_summary",
    "Meter",
    "Reading",
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
