"""Times a callback's hooks from outside (a subclass), for benchmarks/overhead.py and
benchmarks/_overhead_keras.py: the callbacks keep no clock of their own in their hooks."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any


def _timed(base: type, name: str) -> Any:
    def hook(self: Any, *a: Any, **k: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return getattr(base, name)(self, *a, **k)
        finally:
            self.hook_time_s += time.perf_counter() - t0
    return hook


def timed(base: type, hooks: Iterable[str]) -> type:
    """A subclass of ``base`` whose ``hooks`` add their wall time to ``self.hook_time_s``."""
    return type(f"Timed{base.__name__}", (base,),
                {"hook_time_s": 0.0, **{h: _timed(base, h) for h in hooks}})
