"""``@wattwise.measure``: the energy of every call of a function, as a run summary.

A thin layer over :class:`~wattwise.EnergyTracker` used as a context manager: each call is
one run (a ``fit`` stage) of a fresh tracker; what the function does outside a phase window
is the run's ``other`` time, so the summary's ``totals.run`` is the call's energy. Inside the
function, ``wrapper.tracker`` is that call's tracker, for epochs and phases. The module's name
is not ``measure`` so that ``wattwise.measure`` stays the function.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any, Generic, ParamSpec, TypeVar, overload

from wattwise.config import TrackerConfig
from wattwise.errors import ConfigurationError
from wattwise.meters.base import Meter
from wattwise.tracker import EnergyTracker

__all__ = ["Measured", "measure"]

_P = ParamSpec("_P")
_R = TypeVar("_R")


class Measured(Generic[_P, _R]):
    """A function wrapped by :func:`measure`: call it as the function.

    Attributes:
        tracker: the tracker of the running (or last) call, None before the first call.
        last_summary: the run summary of the last call that ended (also when it raised),
            None before; the same dict :meth:`~wattwise.EnergyTracker.finish` returned.
    """

    def __init__(self, fn: Callable[_P, _R], config: TrackerConfig, print_summary: bool) -> None:
        functools.update_wrapper(self, fn)
        self.__wrapped__ = fn
        self._config = config
        self._print = print_summary
        self.tracker: EnergyTracker | None = None
        self.last_summary: dict[str, Any] | None = None

    def __call__(self, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        tracker = self.tracker = EnergyTracker(config=self._config)
        try:
            with tracker:
                return self.__wrapped__(*args, **kwargs)
        finally:
            self.last_summary = tracker.finish()
            if self._print:
                tracker.print_table()

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        """Methods: ``obj.method(...)`` is measured too."""
        return self if obj is None else functools.partial(self.__call__, obj)

    def __repr__(self) -> str:
        return f"<measured {getattr(self.__wrapped__, '__qualname__', self.__wrapped__)!r}>"


@overload
def measure(fn: Callable[_P, _R], /) -> Measured[_P, _R]: ...
@overload
def measure(
    fn: None = None, /, *, meters: str | Sequence[str | Meter] = ...,
    summary_path: str | PathLike[str] | None = ..., run_name: str | None = ...,
    idle_baseline_s: float = ..., carbon_intensity_g_per_kwh: float | None = ...,
    country_iso_code: str | None = ..., gpu_devices: Sequence[int] | None = ...,
    print_summary: bool = ..., config: TrackerConfig | None = ...,
) -> Callable[[Callable[_P, _R]], Measured[_P, _R]]: ...


def measure(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    meters: str | Sequence[str | Meter] = "auto",
    summary_path: str | PathLike[str] | None = None,
    run_name: str | None = None,
    idle_baseline_s: float = 0.0,
    carbon_intensity_g_per_kwh: float | None = None,
    country_iso_code: str | None = None,
    gpu_devices: Sequence[int] | None = None,
    print_summary: bool = False,
    config: TrackerConfig | None = None,
) -> Any:
    """Measure the energy of each call of a function: ``@measure`` or ``@measure(...)``.

    Each call begins a run of a new :class:`~wattwise.EnergyTracker` (meters opened for the
    call and closed after it), runs the function, and ends the run ``"completed"``, or
    ``"failed"`` (``"interrupted"`` for ``KeyboardInterrupt``) with the error when the function
    raises; the exception propagates unchanged, and so does the return value. The summary is
    then ``wrapper.last_summary`` (``["totals"]["run"]["joules"]`` is the call's energy) and,
    with ``summary_path``, the JSON file (rewritten by each call). An error inside the
    measurement is one warning, never an exception in the function; a meter asked for by name
    that cannot open raises before the function runs.

    Args:
        meters: ``"auto"`` (default), meter names or :class:`~wattwise.meters.Meter` instances.
        summary_path: the run summary JSON file; None (default) writes none.
        run_name: the run's name in the summary (default: the function's qualified name).
        idle_baseline_s: seconds of idle power measured before each call (default 0 = off).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for ``co2_g`` (default None).
        country_iso_code: ISO 3166 alpha-3 code for codecarbon's offline carbon intensity.
        gpu_devices: CUDA device indices to read (default None = every visible one).
        print_summary: print the run table after each call (default False).
        config: a ready :class:`~wattwise.TrackerConfig` instead of the arguments above.

    Raises:
        ConfigurationError: a bad argument (at decoration), or a function that returns before
            its work is done (a coroutine or generator function).

    Example:
        >>> import wattwise
        >>> from wattwise.testing import FakeMeter
        >>> meter = FakeMeter(("cpu:package-0",))
        >>> @wattwise.measure(meters=[meter])
        ... def work(n):
        ...     meter.advance(2.5 * n)  # the counter moves 2.5 J per unit of work
        ...     return n
        >>> work(4)
        4
        >>> work.last_summary["status"], work.last_summary["totals"]["run"]["joules"]
        ('completed', 10.0)
    """
    def wrap(f: Callable[..., Any]) -> Measured[Any, Any]:
        if not callable(f):
            raise ConfigurationError(f"measure({f!r}): expected a function to measure")
        if (inspect.iscoroutinefunction(f) or inspect.isgeneratorfunction(f)
                or inspect.isasyncgenfunction(f)):
            raise ConfigurationError(
                f"measure({getattr(f, '__qualname__', f)!r}): a coroutine or generator function "
                "returns before its work is done, so a call would measure nothing; measure the "
                "code that drives it, or use `with EnergyTracker(...)` around the loop")
        cfg = config
        if cfg is None:
            cfg = TrackerConfig(
                meters=meters,  # type: ignore[arg-type]
                summary_path=summary_path,  # type: ignore[arg-type]
                run_name=run_name if run_name is not None else getattr(f, "__qualname__", None),
                idle_baseline_s=idle_baseline_s,
                carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
                country_iso_code=country_iso_code,
                gpu_devices=gpu_devices,  # type: ignore[arg-type]
                on_error="warn", owner="measure",
            )
        elif not isinstance(cfg, TrackerConfig):
            raise ConfigurationError(f"measure(config={cfg!r}): expected a TrackerConfig")
        if not isinstance(print_summary, bool):
            raise ConfigurationError(f"measure(print_summary={print_summary!r}): expected True "
                                     "or False")
        return Measured(f, cfg, print_summary)

    return wrap if fn is None else wrap(fn)
