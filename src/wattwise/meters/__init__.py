"""Hardware meters: cumulative energy counters in joules.

Backends import their vendor libraries lazily, so importing this package is cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wattwise.meters.base import Meter, Reading, Scope

__all__ = [
    "Meter",
    "Reading",
    "Scope",
    "RaplMeter",
    "NvmlMeter",
    "PyRaplMeter",
    "CodeCarbonMeter",
    "open_meters",
]

_LAZY = {
    "RaplMeter": "wattwise.meters.rapl",
    "NvmlMeter": "wattwise.meters.nvml",
    "PyRaplMeter": "wattwise.meters.pyrapl",
    "CodeCarbonMeter": "wattwise.meters.codecarbon",
    "open_meters": "wattwise.meters.factory",
}

if TYPE_CHECKING:
    from wattwise.meters.codecarbon import CodeCarbonMeter
    from wattwise.meters.factory import open_meters
    from wattwise.meters.nvml import NvmlMeter
    from wattwise.meters.pyrapl import PyRaplMeter
    from wattwise.meters.rapl import RaplMeter


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wattwise.meters' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
