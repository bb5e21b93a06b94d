"""``warn``: a wattwise warning that points at the user's code, not at wattwise's internals."""

from __future__ import annotations

import os
import sys
import warnings

from wattwise.errors import WattwiseWarning

# frames in these packages are skipped: a warning names the line of the user's code that
# called into them (their training script), not tracker.py or Lightning's hook dispatch
_SKIP = ("wattwise", "lightning", "pytorch_lightning", "keras", "tensorflow", "torch", "jax")


def _skip_prefixes() -> tuple[str, ...]:
    out = []
    for name in _SKIP:
        mod = sys.modules.get(name)
        file = getattr(mod, "__file__", None)
        if file:
            out.append(os.path.dirname(file) + os.sep)
    return tuple(out)


def warn(message: str, category: type[WattwiseWarning] = WattwiseWarning) -> None:
    """Issue ``message`` as ``category`` at the first frame outside wattwise and the frameworks."""
    prefixes = _skip_prefixes()
    frame = sys._getframe(1)
    level = 2  # stacklevel 2 is warn()'s caller, frame 1 here
    while frame is not None and frame.f_code.co_filename.startswith(prefixes):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)
