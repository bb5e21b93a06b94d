"""Warnings that point at the user's code, and the failure guard of the tracker.

``warn`` issues a wattwise warning at the first frame outside wattwise and the frameworks.
:class:`Guard` and :func:`guarded` make measurement errors one warning that stops measuring,
never an exception in a training loop (``on_error="warn"``, the callbacks' setting).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from wattwise.errors import MeterWarning, WattwiseWarning

_F = TypeVar("_F", bound=Callable[..., Any])

# frames in these packages are skipped: a warning names the line of the user's code that
# called into them (their training script), not tracker.py or Lightning's hook dispatch
_SKIP = ("wattwise", "lightning", "pytorch_lightning", "keras", "tensorflow", "torch", "jax",
         "transformers", "accelerate")


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


class Guard:
    """Failure reporting of one tracker: each kind of warning once; measurement stops at the
    first failure (``broken``) until the next stage begins."""

    def __init__(self, owner: str, on_error: str) -> None:
        self.owner, self.raises = owner, on_error == "raise"
        self.broken = False
        self._warned: set[str] = set()

    def fail(self, what: str, exc: BaseException) -> None:
        """Measurement never kills training: report once, stop measuring, keep what we have."""
        if not self.broken:
            self.broken = True
            warn(f"{self.owner}: {what} failed ({type(exc).__name__}: {exc}); energy "
                 "measurement stops here, training continues and what was measured is kept",
                 MeterWarning)

    def once(self, key: str, message: str, category: type[WattwiseWarning]) -> None:
        """Warn ``message`` the first time ``key`` comes up."""
        if key not in self._warned:
            self._warned.add(key)
            warn(message, category)


def guarded(what: str) -> Callable[[_F], _F]:
    """Method decorator: with the owner's ``_guard`` not raising, an exception becomes
    :meth:`Guard.fail` and the call returns None; after a failure calls return None."""

    def deco(fn: _F) -> _F:
        @functools.wraps(fn)
        def run(self: Any, *args: Any, **kwargs: Any) -> Any:
            guard: Guard = self._guard
            if guard.broken:
                return None
            try:
                return fn(self, *args, **kwargs)
            except Exception as e:
                if guard.raises:
                    raise
                guard.fail(what, e)
                return None

        return run  # type: ignore[return-value]

    return deco
