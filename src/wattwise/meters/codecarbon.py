"""codecarbon's estimate of CPU and RAM energy, for machines with no readable counter.

:class:`CodeCarbonMeter` computes what codecarbon's ``OfflineEmissionsTracker`` reports on such
a machine (its TDP table, its CPU-load and RAM power models, see
:mod:`wattwise.meters._codecarbon_model`) without running codecarbon's tracker: no import of
codecarbon, no subprocess and no codecarbon thread on the training thread. Readings are estimates
(``estimated=True``); docs/meters.md says how they are computed and what they cannot know.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import threading
import time
from typing import Any

from wattwise.config import carbon_of_country
from wattwise.errors import ConfigurationError, MeterReadError, MeterUnavailableError
from wattwise.meters import _codecarbon_model as ccm
from wattwise.meters._poller import Poller
from wattwise.meters.base import Meter, Reading, check_seconds

__all__ = ["CodeCarbonMeter", "carbon_intensity_g_per_kwh"]

J_PER_KWH = 3.6e6


def carbon_intensity_g_per_kwh(country_iso_code: str) -> float:
    """Carbon intensity of a country's electricity, in grams CO2eq per kWh.

    From codecarbon's bundled offline data (its global energy mix table), read without
    importing codecarbon; no network.

    Args:
        country_iso_code: ISO 3166-1 alpha-3 code, e.g. ``"FRA"`` (case-insensitive).

    Raises:
        ConfigurationError: the code is not a 3-letter string, not in codecarbon's data, or
            codecarbon is not installed.

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
    return carbon_of_country(country_iso_code.strip().upper(), "carbon_intensity_g_per_kwh")


class CodeCarbonMeter(Meter):
    """codecarbon's estimate of CPU and RAM energy, computed cheaply, in joules since the first
    :meth:`read` (which returns 0 J for both domains and so never waits for the CPU lookup).

    Opening reads ``/proc/stat`` and ``/proc/meminfo`` (``psutil`` where they are missing);
    the CPU model lookup (``/proc/cpuinfo`` on Linux, py-cpuinfo elsewhere) and the match in
    codecarbon's TDP table run on a background thread. The CPU load (``/proc/stat`` or
    ``psutil.cpu_times()``) is sampled every ``measure_power_secs`` by a small thread and at
    every :meth:`read`; each interval adds
    ``0.1 + 0.9 x load**3`` times its seconds to a running sum that :meth:`read` multiplies by
    the TDP, as codecarbon's CPU-load model does with its 1 s samples. RAM: codecarbon's
    constant RAM power x seconds. Domains: ``cpu:estimated``, ``ram:estimated``.

    A later read that needs the TDP before the lookup has finished waits for it, at most
    ``setup_timeout_s`` (on Linux the lookup takes tens of milliseconds, done long before the
    first window ends; elsewhere py-cpuinfo runs a subprocess, about a second).

    Args:
        country_iso_code: ISO 3166-1 alpha-3 code for :attr:`emissions_g` (None: no CO2).
            Validated against codecarbon's offline data.
        measure_power_secs: seconds between CPU-load samples (default 1.0, codecarbon's
            power-monitor interval; the estimate matches codecarbon's at this value).
        setup_timeout_s: seconds a read may wait for the CPU model lookup (default 10.0).
        proc_root: the folder holding ``cpuinfo``, ``stat`` and ``meminfo`` (default
            ``/proc``; a missing file falls back to py-cpuinfo / psutil, as elsewhere than Linux).
        sysfs_cpu: the sysfs CPU folder whose ``topology/physical_package_id`` files count
            the sockets.

    Raises:
        ConfigurationError: unknown country code or a bad interval.
        MeterUnavailableError: codecarbon (its data files) or psutil is not installed.

    Example:
        >>> from wattwise.meters import CodeCarbonMeter
        >>> with CodeCarbonMeter() as meter:  # doctest: +SKIP
        ...     print(meter.read().joules)  # {'cpu:estimated': 0.01, 'ram:estimated': 0.02}
    """

    name = "codecarbon"
    scope = "node"
    estimated = True

    def __init__(
        self,
        country_iso_code: str | None = None,
        *,
        measure_power_secs: float = 1.0,
        setup_timeout_s: float = 10.0,
        proc_root: str | os.PathLike[str] = "/proc",
        sysfs_cpu: str | os.PathLike[str] = "/sys/devices/system/cpu",
    ) -> None:
        check_seconds("CodeCarbonMeter(measure_power_secs", measure_power_secs, "e.g. 1.0")
        check_seconds("CodeCarbonMeter(setup_timeout_s", setup_timeout_s, "e.g. 10.0")
        self._intensity_g_per_kwh: float | None = None
        if country_iso_code is not None:
            self._intensity_g_per_kwh = carbon_intensity_g_per_kwh(country_iso_code)
            country_iso_code = country_iso_code.strip().upper()
        self._country = country_iso_code
        self.update_period_s = float(measure_power_secs)
        self._setup_timeout_s = float(setup_timeout_s)
        base = ccm.codecarbon_dir()
        table = os.path.join(base or "", "data", "hardware", "cpu_power.csv")
        if base is None or not os.path.isfile(table):
            raise MeterUnavailableError(
                "CodeCarbonMeter: codecarbon is not installed (its TDP table "
                f"{table!r} is missing). Fix: pip install 'wattwise[codecarbon]'."
            )
        proc = os.fspath(proc_root)
        self._psutil: Any = None
        self._proc_stat: str | None = os.path.join(proc, "stat")
        try:
            first_counts = ccm.cpu_counts_from_proc_stat(_first_line(self._proc_stat))
        except (OSError, ValueError):  # not Linux: psutil, as codecarbon
            self._proc_stat = None
            first_counts = ccm.cpu_counts(self._need_psutil().cpu_times())
        try:
            ram_bytes = ccm.mem_total_bytes_from_proc_meminfo(_read(os.path.join(proc, "meminfo")))
        except (OSError, ValueError):
            ram_bytes = float(self._need_psutil().virtual_memory().total)
        arm = any(a in platform.machine().lower() for a in ("arm", "aarch"))
        self.ram_power_w = ccm.ram_power_w(ram_bytes, arm=arm)
        """codecarbon's RAM power for this machine, in watts."""
        self._lock = threading.Lock()
        self._closed = False
        self._failed: str | None = None
        self._t0_s = self._last_s = time.perf_counter()
        self._last_counts = first_counts
        self._load_s = 0.0  # sum of (0.1 + 0.9 load**3) x seconds: CPU joules / TDP
        self._read_before = False
        self._cpu: ccm.CpuPower | None = None
        self._setup_error: str | None = None
        self._setup_done = threading.Event()
        self._setup_thread = threading.Thread(
            target=self._setup,
            args=(table, os.path.join(proc, "cpuinfo"), os.fspath(sysfs_cpu)),
            name="wattwise-codecarbon-setup",
            daemon=True,
        )
        self._setup_thread.start()
        self._poller = Poller("wattwise-codecarbon-sample")
        self._poller.start(self._sample, interval_s=self.update_period_s)

    # -- background work ------------------------------------------------------------------
    def _setup(self, table: str, proc_cpuinfo: str, sysfs_cpu: str) -> None:
        """The one-time CPU lookup (background thread): model, TDP, sockets."""
        try:
            model: str | None = None
            try:
                with open(proc_cpuinfo, encoding="utf-8", errors="replace") as f:
                    model = ccm.cpu_model_from_proc_cpuinfo(f.read())
            except OSError:
                model = None
            if model is None:  # py-cpuinfo, as codecarbon (a subprocess; this thread waits)
                import cpuinfo  # type: ignore[import-untyped]

                model = str(cpuinfo.get_cpu_info().get("brand_raw", "") or "") or None
            mac_arm = sys.platform == "darwin" and ccm.is_mac_arm(model or "")
            logical = (  # psutil.cpu_count(): os.cpu_count()'s sysconf on Linux
                os.cpu_count() if self._psutil is None else self._psutil.cpu_count()
            )
            self._cpu = ccm.cpu_tdp_w(
                model,
                table,
                logical or 1,
                ccm.socket_count(sysfs_cpu),
                mac_arm=mac_arm,
            )
        except Exception as e:  # noqa: BLE001 - reported by the next read
            self._setup_error = f"{type(e).__name__}: {e}"
        finally:
            self._setup_done.set()

    def _advance(self) -> None:
        """Close the running load interval (lock held)."""
        now = time.perf_counter()
        counts = self._cpu_counts()
        busy = ccm.busy_fraction(self._last_counts, counts)
        self._load_s += ccm.cpu_power_w(1.0, busy) * (now - self._last_s)
        self._last_s, self._last_counts = now, counts

    def _cpu_counts(self) -> tuple[float, float]:
        if self._proc_stat is not None:
            return ccm.cpu_counts_from_proc_stat(_first_line(self._proc_stat))
        return ccm.cpu_counts(self._psutil.cpu_times())

    def _need_psutil(self) -> Any:
        if self._psutil is None:
            try:
                import psutil
            except ImportError as e:
                raise MeterUnavailableError(
                    "CodeCarbonMeter: psutil is not installed. Fix: pip install "
                    "'wattwise[codecarbon]' (psutil comes with codecarbon)."
                ) from e
            self._psutil = psutil
        return self._psutil

    def _sample(self) -> None:
        """One CPU-load sample (the sampling thread)."""
        with self._lock:
            if self._closed or self._failed is not None:
                raise MeterReadError("CodeCarbonMeter: closed")  # ends the thread
            try:
                self._advance()
            except Exception as e:
                self._failed = f"reading the CPU times failed: {e!r}"
                raise MeterReadError(self._failed) from e

    def _cpu_power(self) -> ccm.CpuPower:
        if not self._setup_done.wait(self._setup_timeout_s):
            raise MeterReadError(
                "CodeCarbonMeter: the CPU model lookup (py-cpuinfo) did not finish in "
                f"setup_timeout_s={self._setup_timeout_s} s; the CPU estimate is unknown"
            )
        if self._cpu is None:
            raise MeterReadError(f"CodeCarbonMeter: the CPU model lookup failed: {self._setup_error}")
        return self._cpu

    # -- Meter ----------------------------------------------------------------------------
    @property
    def domains(self) -> tuple[str, ...]:
        """``cpu:estimated``, ``ram:estimated``."""
        return ("cpu:estimated", "ram:estimated")

    @property
    def emissions_g(self) -> float | None:
        """Grams CO2eq of the energy read so far (codecarbon's offline intensity x kWh), or
        None without ``country_iso_code``."""
        if self._intensity_g_per_kwh is None:
            return None
        return self._last_total_j / J_PER_KWH * self._intensity_g_per_kwh

    _last_total_j = 0.0

    def read(self) -> Reading:
        """Estimated joules per domain since the first read (which returns 0 J).

        Raises:
            MeterReadError: the meter is closed, the CPU times could not be read, or the CPU
                lookup failed or did not finish within ``setup_timeout_s``.
        """
        with self._lock:
            if self._closed:
                raise MeterReadError("CodeCarbonMeter.read(): the meter is closed")
            if self._failed is not None:
                raise MeterReadError(f"CodeCarbonMeter: {self._failed}")
            try:
                self._advance()
            except Exception as e:
                raise MeterReadError(f"CodeCarbonMeter: reading the CPU times failed: {e!r}") from e
            if not self._read_before:  # the origin: 0 J, so it never waits for the lookup
                self._read_before = True
                self._load_s, self._t0_s = 0.0, self._last_s
            load_s, elapsed_s = self._load_s, self._last_s - self._t0_s
        tdp_w = self._cpu_power().tdp_w if load_s > 0 else 0.0
        joules = {"cpu:estimated": tdp_w * load_s, "ram:estimated": self.ram_power_w * elapsed_s}
        self._last_total_j = joules["cpu:estimated"] + joules["ram:estimated"]
        return Reading(joules=joules, time_s=time.monotonic(), estimated=True)

    def close(self) -> None:
        """Stop the sampling thread. Idempotent."""
        with self._lock:
            self._closed = True
        self._poller.stop()

    def describe(self) -> dict[str, object]:
        """Name, domains, the CPU model and watts codecarbon's model uses, and the notes."""
        d = super().describe()
        cpu = self._cpu if self._setup_done.is_set() else None
        d.update({
            "cpu_model": cpu.model if cpu else None,
            "cpu_tdp_w": cpu.tdp_w if cpu else None,
            "cpu_tdp_source": cpu.source if cpu else None,
            "ram_power_w": self.ram_power_w,
            "country_iso_code": self._country,
            "codecarbon_version": _codecarbon_version(),
            "model": f"codecarbon {ccm.CODECARBON_MODEL_VERSION} CPU-load and RAM models",
        })
        d["notes"] = [
            (
                "ESTIMATE (no hardware energy counter read): CPU = TDP x (0.1 + 0.9 x load^3) "
                "with the TDP from codecarbon's table and the machine-wide CPU load sampled "
                "every second; RAM = codecarbon's per-DIMM constant"
            ),
            "node-wide: read on one process per node",
        ]
        return d

    def __repr__(self) -> str:
        return (
            f"CodeCarbonMeter(country_iso_code={self._country!r}, "
            f"measure_power_secs={self.update_period_s!r})"
        )


def _read(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


def _first_line(path: str) -> str:
    """The aggregate ``cpu`` line of ``/proc/stat`` (the rest can be long: a line per CPU)."""
    with open(path, "rb") as f:
        return f.readline().decode("ascii", "replace")


def _codecarbon_version() -> str | None:
    try:
        return importlib.metadata.version("codecarbon")
    except importlib.metadata.PackageNotFoundError:
        return None
