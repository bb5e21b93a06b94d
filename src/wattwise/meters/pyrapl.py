"""RAPL through the pyRAPL library, for users who ask for it by name.

pyRAPL reads the same powercap files as :class:`~wattwise.meters.rapl.RaplMeter` (from the
hard-coded ``/sys/class/powercap/intel-rapl``) but does not unwrap counter wraps and
configures the root logger when imported (undone here). Prefer ``"rapl"``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from wattwise.errors import MeterReadError, MeterUnavailableError
from wattwise.meters.base import Meter, Reading
from wattwise.meters.rapl import DEFAULT_MAX_POWER_W, RAPL_PERMISSION_HELP

__all__ = ["PyRaplMeter"]


def _import_pyrapl() -> Any:
    """Import pyRAPL without letting it configure the root logger."""
    root = logging.getLogger()
    before = list(root.handlers)
    guard = logging.NullHandler()  # basicConfig() does nothing while root has a handler
    root.addHandler(guard)
    try:
        import pyRAPL
    except ImportError as e:
        raise MeterUnavailableError(
            "PyRaplMeter: pyRAPL is not installed. Fix: pip install 'wattwise[rapl]', or use "
            "the built-in 'rapl' meter."
        ) from e
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
    return pyRAPL


class PyRaplMeter(Meter):
    """CPU package and DRAM energy from pyRAPL, in joules since opening.

    Domains ``cpu:package-N`` and ``cpu:dram-N`` per socket N that pyRAPL reports. pyRAPL
    does not handle counter wraps: a wrap makes :meth:`read` raise
    :class:`~wattwise.errors.MeterReadError` (use the ``"rapl"`` meter for long runs).

    Raises:
        MeterUnavailableError: pyRAPL is missing, RAPL is absent or unreadable.

    Example:
        >>> from wattwise.meters import PyRaplMeter
        >>> with PyRaplMeter() as meter:  # doctest: +SKIP
        ...     print(meter.read().joules)
    """

    name = "pyrapl"
    scope = "node"
    estimated = False
    update_period_s = 0.001

    def __init__(self) -> None:
        pyRAPL = _import_pyrapl()
        try:
            pyRAPL.setup()
            self._measurement = pyRAPL.Measurement("wattwise")
            self._measurement.begin()
            self._measurement.end()
        except PermissionError as e:
            raise MeterUnavailableError(
                f"PyRaplMeter(): permission denied reading RAPL ({e}). {RAPL_PERMISSION_HELP}"
            ) from e
        except Exception as e:  # PyRAPLCantRecordEnergyConsumption, FileNotFoundError, ...
            detail = str(e) or "no RAPL under /sys/class/powercap/intel-rapl"
            raise MeterUnavailableError(
                f"PyRaplMeter(): pyRAPL cannot read RAPL here ({type(e).__name__}: {detail}). "
                "Fix: run on bare-metal Linux with the intel_rapl_common driver loaded, or use "
                "another meter (nvml, codecarbon)."
            ) from e
        first = self._measurement.result
        self._domains = tuple(self._names(first))
        if not self._domains:
            raise MeterUnavailableError(
                "PyRaplMeter(): pyRAPL reported no package or DRAM energy. Fix: use the 'rapl' "
                "meter."
            )
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def _names(result: Any) -> dict[str, float]:
        out: dict[str, float] = {}
        for kind, values in (("package", result.pkg), ("dram", result.dram)):
            for socket, energy_uj in enumerate(values or []):
                if energy_uj is not None:  # pyRAPL: µJ per socket index
                    out[f"cpu:{kind}-{socket}"] = float(energy_uj) / 1e6
        return out

    @property
    def domains(self) -> tuple[str, ...]:
        """``cpu:package-N`` and ``cpu:dram-N`` per socket."""
        return self._domains

    def max_power_w(self, domain: str) -> float | None:
        """RaplMeter's default for the zone kind (1000 W package, 500 W dram); pyRAPL does
        not read the zones' power limits."""
        if domain not in self._domains:
            return None
        kind = domain.split(":", 1)[1].rsplit("-", 1)[0]
        return DEFAULT_MAX_POWER_W.get(kind)

    def read(self) -> Reading:
        """Joules per domain since the meter was opened (one pyRAPL ``end()``)."""
        with self._lock:
            if self._closed:
                raise MeterReadError("PyRaplMeter.read(): the meter is closed")
            try:
                self._measurement.end()  # delta since begin(), which stays put: cumulative
                joules = self._names(self._measurement.result)
            except Exception as e:
                raise MeterReadError(f"PyRaplMeter: pyRAPL failed: {e!r}") from e
            t = time.monotonic()
        if set(joules) != set(self._domains):
            raise MeterReadError(
                f"PyRaplMeter: pyRAPL reported domains {sorted(joules)!r}, expected "
                f"{list(self._domains)!r}"
            )
        if any(v < 0 for v in joules.values()):
            raise MeterReadError(
                "PyRaplMeter: a counter went backwards (a RAPL wrap; pyRAPL does not unwrap). "
                "Fix: use the 'rapl' meter."
            )
        return Reading(joules={d: joules[d] for d in self._domains}, time_s=t)

    def close(self) -> None:
        """Nothing to release in pyRAPL; marks the meter closed. Idempotent."""
        self._closed = True
