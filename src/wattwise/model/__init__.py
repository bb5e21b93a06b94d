"""The BUTTER-E energy model (Tripp et al. 2024): pure functions, no I/O, no frameworks.

Modules: :mod:`~wattwise.model.shapes` (BUTTER shapes, NTP, width search),
:mod:`~wattwise.model.working_sets`, :mod:`~wattwise.model.hierarchy` (levels, placement,
the paper's nodes), :mod:`~wattwise.model.energy` (features, prediction),
:mod:`~wattwise.model.coefficients` (presets: the paper's Table 4 / 3000 except k_e, and a
refit on the BUTTER-E run sample; JSON format),
:mod:`~wattwise.model.butter_e` (paper reproduction), :mod:`~wattwise.model.fit` (refit; needs
scipy), :mod:`~wattwise.model.advise` (sizing advice), :mod:`~wattwise.model.curves`
(predicted J/sample against NTP and the cache boundaries, for ``wattwise advise --plot`` and
``wattwise sweep``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattwise.model.advise import Advice, LevelRatio, ResizeOption, advise
    from wattwise.model.coefficients import Coefficients, preset
    from wattwise.model.energy import ModelOptions, pass_features, predict, run_features
    from wattwise.model.hierarchy import BUTTER_E_CPU, BUTTER_E_GPU, Hierarchy, MemoryLevel
    from wattwise.model.shapes import network_widths, ntp
    from wattwise.model.working_sets import WorkingSet, WorkingSets, mlp_working_sets

# imported on first use: ``import wattwise.model.working_sets`` (the callbacks' first batch)
# does not pay for the whole model (~10 ms)
_WHERE = {
    **dict.fromkeys(("Advice", "LevelRatio", "ResizeOption", "advise"), "advise"),
    **dict.fromkeys(("Coefficients", "preset"), "coefficients"),
    **dict.fromkeys(("ModelOptions", "pass_features", "predict", "run_features"), "energy"),
    **dict.fromkeys(("BUTTER_E_CPU", "BUTTER_E_GPU", "Hierarchy", "MemoryLevel"), "hierarchy"),
    **dict.fromkeys(("network_widths", "ntp"), "shapes"),
    **dict.fromkeys(("WorkingSet", "WorkingSets", "mlp_working_sets"), "working_sets"),
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"wattwise.model.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'wattwise.model' has no attribute {name!r}")

__all__ = [
    "BUTTER_E_CPU",
    "BUTTER_E_GPU",
    "Advice",
    "Coefficients",
    "Hierarchy",
    "LevelRatio",
    "MemoryLevel",
    "ModelOptions",
    "ResizeOption",
    "WorkingSet",
    "WorkingSets",
    "advise",
    "mlp_working_sets",
    "network_widths",
    "ntp",
    "pass_features",
    "predict",
    "preset",
    "run_features",
]
