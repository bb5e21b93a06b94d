"""The background thread a meter uses to read its counters between :meth:`Meter.read` calls.

RAPL polls its wrapping counters often enough to see every wrap; NVML integrates sampled power
for GPUs without an energy counter. Both need the same small thread: call one method of the
meter every ``interval_s`` seconds until the meter is closed, garbage-collected, or the call
fails (the meter records the failure and its next ``read()`` reports it).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable

from wattwise.errors import MeterReadError

__all__ = ["Poller"]


class Poller:
    """A daemon thread that calls ``work()`` every ``interval_s`` seconds.

    The thread holds ``work`` through a weak reference (``work`` is a bound method of the meter),
    so a meter that is dropped without :meth:`Meter.close` is still garbage-collected; the
    thread then ends at its next tick. A :class:`~wattwise.errors.MeterReadError` from ``work``
    ends the thread too: the meter records it and reports it on its next read.

    Args:
        name: the thread's name (``wattwise-rapl-poll``, ...).

    Example:
        >>> class Counter:
        ...     n = 0
        ...     def tick(self) -> None:
        ...         self.n += 1
        >>> c, p = Counter(), Poller("example")
        >>> p.start(c.tick, interval_s=0.001)
        >>> p.stop()
        >>> p.is_alive()
        False
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.stopped = threading.Event()
        """Set by :meth:`stop`; a meter's finalizer may set it too (it holds no meter)."""
        self._thread: threading.Thread | None = None

    def start(self, work: Callable[[], object], interval_s: float) -> None:
        """Start calling ``work`` (a bound method) every ``interval_s`` seconds."""
        ref = weakref.WeakMethod(work)  # type: ignore[arg-type]
        self._thread = threading.Thread(
            target=_loop, args=(ref, self.stopped, interval_s), name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and wait up to ``timeout_s`` seconds for it (not from inside it)."""
        self.stopped.set()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=timeout_s)

    def is_alive(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()


def _loop(
    ref: weakref.WeakMethod[Callable[[], object]], stopped: threading.Event, interval_s: float
) -> None:
    while not stopped.wait(interval_s):
        work = ref()
        if work is None:  # the meter was garbage-collected
            return
        try:
            work()
        except MeterReadError:
            return  # the meter recorded it; its read() reports it
        finally:
            del work
