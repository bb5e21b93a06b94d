"""wattwise: energy per training sample and per epoch, from real hardware counters.

``import wattwise`` imports no training framework, no pynvml and no codecarbon; those load
only when a meter or adapter that needs them is used.
"""

from __future__ import annotations

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
from wattwise.meters.base import Meter, Reading
from wattwise.tracker import EnergyTracker, EpochRecord, PhaseRecord, StepRecord

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "EnergyTracker",
    "PhaseRecord",
    "EpochRecord",
    "StepRecord",
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
