"""codecarbon's offline tracker as an energy ESTIMATOR, for machines with no readable counter.

Uses ``codecarbon.OfflineEmissionsTracker`` only (bundled data, no network), writes no CSV
and keeps codecarbon's logger quiet. Readings are estimates (``estimated=True``): on a
machine without RAPL, codecarbon models CPU power from a TDP table times CPU load (or a
constant) and RAM power from a per-DIMM heuristic. kWh are converted to joules once, here.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from wattwise.errors import ConfigurationError, MeterReadError, MeterUnavailableError
from wattwise.meters.base import Meter, Reading, check_seconds

__all__ = ["CodeCarbonMeter", "carbon_intensity_g_per_kwh"]

J_PER_KWH = 3.6e6
_TASK = "wattwise-window"


def _import_codecarbon() -> Any:
    try:
        import codecarbon
    except ImportError as e:
        raise MeterUnavailableError(
            "CodeCarbonMeter: codecarbon is not installed. Fix: pip install 'wattwise[codecarbon]'."
        ) from e
    logging.getLogger("codecarbon").setLevel(logging.ERROR)  # it resets to INFO at import
    return codecarbon


def carbon_intensity_g_per_kwh(country_iso_code: str) -> float:
    """Carbon intensity of a country's electricity, in grams CO2eq per kWh.

    From codecarbon's bundled offline data (its global energy mix table); no network.

    Args:
        country_iso_code: ISO 3166-1 alpha-3 code, e.g. ``"FRA"`` (case-insensitive).

    Raises:
        ConfigurationError: the code is not a 3-letter string or not in codecarbon's data.
        MeterUnavailableError: codecarbon is not installed.

    Example:
        >>> from wattwise.meters.codecarbon import carbon_intensity_g_per_kwh
        >>> carbon_intensity_g_per_kwh("FRA")  # doctest: +SKIP
        56.039
    """
    if not isinstance(country_iso_code, str) or len(country_iso_code.strip()) != 3:
        raise ConfigurationError(
            f"carbon_intensity_g_per_kwh(country_iso_code={country_iso_code!r}): expected an "
            "ISO 3166-1 alpha-3 code such as 'FRA', 'DEU' or 'USA'."
        )
    _import_codecarbon()
    from codecarbon.input import DataSource

    data = DataSource().get_global_energy_mix_data()  # type: ignore[no-untyped-call]
    code = country_iso_code.strip().upper()
    entry = data.get(code)
    if entry is None or entry.get("carbon_intensity") is None:
        raise ConfigurationError(
            f"carbon_intensity_g_per_kwh(country_iso_code={country_iso_code!r}): not in "
            f"codecarbon's offline data ({len(data)} countries, e.g. 'FRA', 'DEU', 'USA'). "
            "Fix: use an ISO 3166-1 alpha-3 code, or pass carbon_intensity_g_per_kwh directly."
        )
    return float(entry["carbon_intensity"])


class CodeCarbonMeter(Meter):
    """Estimated energy from codecarbon's offline tracker, in joules since opening.

    Every :meth:`read` closes one codecarbon task (``stop_task``) and opens the next
    (``start_task``), adding the task's ``cpu_energy``, ``gpu_energy`` and ``ram_energy``
    (kWh) to running totals. Domains: ``cpu:estimated``, ``ram:estimated`` and, when
    codecarbon found GPUs, ``gpu:estimated``.

    Args:
        country_iso_code: ISO 3166-1 alpha-3 code for codecarbon's CO2 figures (None: its
            default). Validated against codecarbon's offline data.
        measure_power_secs: codecarbon's power sampling interval in seconds (default 1.0).

    Raises:
        ConfigurationError: unknown country code or a bad interval.
        MeterUnavailableError: codecarbon is missing or its tracker fails to start.

    Example:
        >>> from wattwise.meters import CodeCarbonMeter
        >>> with CodeCarbonMeter() as meter:  # doctest: +SKIP
        ...     print(meter.read().joules)  # {'cpu:estimated': 0.8, 'ram:estimated': 2.0}
    """

    name = "codecarbon"
    scope = "node"
    estimated = True

    def __init__(
        self, country_iso_code: str | None = None, *, measure_power_secs: float = 1.0
    ) -> None:
        check_seconds("CodeCarbonMeter(measure_power_secs", measure_power_secs, "e.g. 1.0")
        if country_iso_code is not None:
            carbon_intensity_g_per_kwh(country_iso_code)  # raises ConfigurationError
            country_iso_code = country_iso_code.strip().upper()
        self._country = country_iso_code
        self.update_period_s = float(measure_power_secs)
        codecarbon = _import_codecarbon()
        kwargs: dict[str, Any] = {
            "output_methods": [],  # no CSV, no API, no logger output
            "log_level": "error",
            "measure_power_secs": float(measure_power_secs),
            "allow_multiple_runs": True,
            "tracking_mode": "machine",
        }
        if country_iso_code is not None:
            kwargs["country_iso_code"] = country_iso_code
        self._lock = threading.Lock()
        self._closed = False
        self._totals_kwh = {"cpu": 0.0, "gpu": 0.0, "ram": 0.0}
        self._emissions_kg = 0.0
        try:
            self._tracker = codecarbon.OfflineEmissionsTracker(**kwargs)
            self._tracker.start_task(_TASK)
            first = self._cycle()
        except MeterReadError as e:
            raise MeterUnavailableError(f"CodeCarbonMeter: codecarbon failed to start: {e}") from e
        except Exception as e:  # codecarbon raises assorted errors
            raise MeterUnavailableError(
                f"CodeCarbonMeter(country_iso_code={country_iso_code!r}): codecarbon's offline "
                f"tracker failed to start: {e!r}. Fix: check codecarbon's installation."
            ) from e
        self._gpu = bool(getattr(first, "gpu_count", 0) or 0)
        self._info = {
            "cpu_model": getattr(first, "cpu_model", None),
            "gpu_model": getattr(first, "gpu_model", None) or None,
            "country_iso_code": getattr(first, "country_iso_code", None),
            "codecarbon_version": getattr(first, "codecarbon_version", None),
        }
        self._domains = (
            ("cpu:estimated",) + (("gpu:estimated",) if self._gpu else ()) + ("ram:estimated",)
        )

    def _cycle(self) -> Any:
        """Close the running task, add its energy, open the next. Lock held or in __init__."""
        # stop_task() with no name stops the task that is active: codecarbon renames a task
        # whose name was used before, so stopping by our fixed name would stop the first one
        # again and leave the others "active" (errors at stop()).
        finished = getattr(self._tracker, "_active_task", None)
        data = self._tracker.stop_task()
        if data is None:
            raise MeterReadError("CodeCarbonMeter: codecarbon returned no task data")
        tasks = getattr(self._tracker, "_tasks", None)
        if isinstance(tasks, dict):  # keep memory flat over long runs (one task per read)
            tasks.pop(finished, None)
        self._tracker.start_task(_TASK)
        for part in ("cpu", "gpu", "ram"):
            kwh = getattr(data, f"{part}_energy", None)
            if kwh is not None:
                self._totals_kwh[part] += float(kwh)
        self._emissions_kg += float(getattr(data, "emissions", 0.0) or 0.0)
        return data

    @property
    def domains(self) -> tuple[str, ...]:
        """``cpu:estimated``, ``gpu:estimated`` (if GPUs), ``ram:estimated``."""
        return self._domains

    @property
    def emissions_g(self) -> float:
        """codecarbon's estimate of grams CO2eq since opening (updated by :meth:`read`)."""
        return self._emissions_kg * 1000.0

    def read(self) -> Reading:
        """Estimated joules per domain since the meter was opened.

        Raises:
            MeterReadError: codecarbon failed, or the meter is closed.
        """
        with self._lock:
            if self._closed:
                raise MeterReadError("CodeCarbonMeter.read(): the meter is closed")
            try:
                self._cycle()
            except MeterReadError:
                raise
            except Exception as e:
                raise MeterReadError(f"CodeCarbonMeter: codecarbon failed: {e!r}") from e
            t = time.monotonic()
            joules = {d: self._totals_kwh[d.split(":")[0]] * J_PER_KWH for d in self._domains}
        return Reading(joules=joules, time_s=t, estimated=True)

    def close(self) -> None:
        """Stop codecarbon's tracker (writes nothing). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._tracker.stop_task()
                self._tracker.stop()
            except Exception:  # noqa: BLE001, S110 - closing never raises
                pass

    def describe(self) -> dict[str, object]:
        """Name, domains, codecarbon's hardware guess and the estimate note."""
        d = super().describe()
        d.update(self._info)
        d["notes"] = [
            (
                "ESTIMATE from codecarbon's offline tracker (no hardware energy counter read by "
                "wattwise): CPU from a TDP table x CPU load or a constant, RAM from a per-DIMM "
                "heuristic"
            ),
            "node-wide: read on one process per node",
        ]
        return d

    def __repr__(self) -> str:
        return f"CodeCarbonMeter(country_iso_code={self._country!r}, domains={self._domains!r})"
