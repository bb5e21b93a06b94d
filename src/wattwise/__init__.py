"""wattwise: energy per training sample and per epoch, from real hardware counters.

``import wattwise`` imports no training framework, no pynvml and no codecarbon; those load
only when a meter or adapter that needs them is used.
"""

from __future__ import annotations

from wattwise._version import __version__
from wattwise.config import TrackerConfig
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
from wattwise.measuring import measure
from wattwise.meters.base import Meter, Reading
from wattwise.records import EpochRecord, PhaseRecord, StepRecord
from wattwise.report import RunSummary, load_summary
from wattwise.tracker import EnergyTracker

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
