"""``MeterSet``: the meters of one stage, read as deltas; failures dropped with one warning.

Opens the meters a :class:`~wattwise.config.TrackerConfig` names (and takes the instances it
holds, node-wide ones only where ``node_meters``), keeps estimating meters out of the measured
joules when a hardware counter is in use, turns cumulative readings into per-domain deltas,
and closes only the meters it opened: instances the user passed belong to the user.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from wattwise._warn import warn
from wattwise.config import TrackerConfig
from wattwise.errors import ConfigurationError, EstimateWarning, MeterWarning
from wattwise.meters.base import Meter, Reading

__all__ = ["MeterSet"]

#: The powercap folder RAPL meters opened by name read; tests point it at a fake tree.
RAPL_ROOT_ENV = "WATTWISE_RAPL_ROOT"


class MeterSet:
    """The open meters of one stage.

    Args:
        config: the run's settings (``meters``, ``node_meters``, ``gpu_devices``).

    Raises:
        MeterUnavailableError: a meter asked for by name cannot open.
        ConfigurationError: two meters report the same domain.
    """

    def __init__(self, config: TrackerConfig) -> None:
        from wattwise.meters.factory import open_meters

        spec: Any = config.meters
        meters, self.unavailable = open_meters(
            spec if spec == "auto" else list(spec),
            node_meters=config.node_meters,
            gpu_devices=config.gpu_devices,
            rapl_root=os.environ.get(RAPL_ROOT_ENV, "/sys/class/powercap"),
        )
        user = config.instances
        self._owned = [m for m in meters if not any(m is u for u in user)]
        self.estimated = bool(meters) and all(m.estimated for m in meters)
        self.active: list[Meter] = []  # measured (or, with no counter at all, estimating) meters
        self.excluded: list[Meter] = []  # estimates kept out of measured joules
        self.info: list[dict[str, Any]] = []
        self._info_of: dict[int, dict[str, Any]] = {}
        self.approx: set[str] = set()  # domains read as power x time (no energy counter)
        self._prev: dict[str, float] = {}
        self._t0 = time.monotonic()
        self._epoch: int | None = None
        self._excluded_first: dict[str, float] = {}
        self.excluded_joules: dict[str, float] | None = None
        self._classify(meters)
        self._announce(config, meters)

    def _classify(self, meters: Sequence[Meter]) -> None:
        seen: dict[str, Meter] = {}
        for m in meters:
            for d in m.domains:
                if d in seen:
                    self.close()
                    raise ConfigurationError(
                        f"EnergyTracker(meters=...): meters {seen[d]!r} and {m!r} both report "
                        f"domain {d!r}; give each meter distinct domain names"
                    )
                seen[d] = m
            kept_out = m.estimated and not self.estimated
            (self.excluded if kept_out else self.active).append(m)
            info = dict(m.describe())
            info["use"] = "excluded" if kept_out else ("estimated" if m.estimated else "measured")
            info["dropped"] = None
            self.info.append(info)
            self._info_of[id(m)] = info

    def _announce(self, config: TrackerConfig, meters: Sequence[Meter]) -> None:
        if not meters and config.node_meters:
            warn(
                "EnergyTracker: no meter could be opened; energy values will be None "
                f"(unavailable: {self.unavailable!r})",
                MeterWarning,
            )
        elif self.estimated and config.meters != "auto":
            # ("auto" has already said so in open_meters' one warning, with the reasons)
            warn(
                "EnergyTracker: no hardware counter is readable; joules are ESTIMATES "
                f"from {[m.name for m in meters]!r}",
                EstimateWarning,
            )

    # reading -------------------------------------------------------------------------------
    def first_reading(self) -> dict[str, float]:
        """Read every meter once as the baseline; returns domain -> counter update period."""
        for m in self.excluded:
            r = self._read(m)
            if r is not None:
                self._excluded_first.update(r.joules)
        periods: dict[str, float] = {}
        for m in tuple(self.active):
            r = self._read(m)
            if r is not None:
                for d, j in r.joules.items():
                    self._prev[d] = float(j)
                    periods[d] = m.update_period_s
        return periods

    def deltas(self, periods: dict[str, float], epoch: int | None = None
               ) -> list[tuple[str, float]]:
        """Read the active meters; (domain, joules since the previous read) per domain. A
        domain seen for the first time is a baseline (its period is added to ``periods``).
        ``epoch``: the open window's, noted if a meter is dropped."""
        self._epoch = epoch
        out: list[tuple[str, float]] = []
        prev = self._prev
        for m in tuple(self.active):
            r = self._read(m)
            if r is None:
                continue
            if r.approximate_domains:
                self.approx.update(r.approximate_domains)
            mine: list[tuple[str, float]] = []
            for d, j in r.joules.items():
                p = prev.get(d)
                if p is None:  # first time we see this domain: baseline only
                    prev[d] = float(j)
                    periods.setdefault(d, m.update_period_s)
                    continue
                if j - p < -1e-9 * max(1.0, abs(p)):
                    self.drop(m, f"counter {d!r} went backwards by {p - j:.6g} J")
                    mine = []
                    break
                mine.append((d, j - p))
            for d, delta in mine:
                prev[d] += delta
            out += mine
        return out

    def _read(self, meter: Meter) -> Reading | None:
        try:
            return meter.read()
        except Exception as e:  # noqa: BLE001 - a failing meter never kills training
            self.drop(meter, f"read failed: {type(e).__name__}: {e}")
            return None

    def drop(self, meter: Meter, reason: str) -> None:
        """Stop reading ``meter`` (one warning); what it measured so far is kept."""
        for group in (self.active, self.excluded):
            if any(meter is m for m in group):
                group.remove(meter)
        info = self._info_of.get(id(meter))
        if info is not None:
            info["dropped"] = {"reason": reason, "epoch": self._epoch,
                               "after_s": time.monotonic() - self._t0}
        warn(
            f"EnergyTracker: meter {meter.name!r} (domains {list(meter.domains)!r}) dropped: "
            f"{reason}; energy it measured so far is kept, its domains are None from now on",
            MeterWarning,
        )
        if any(meter is m for m in self._owned):
            _close(meter)

    def close(self) -> None:
        """Read the excluded estimates' totals, then close the meters this set opened."""
        for m in tuple(self.excluded):
            r = self._read(m)
            if r is not None:
                self.excluded_joules = {
                    d: float(j) - self._excluded_first[d]
                    for d, j in r.joules.items()
                    if d in self._excluded_first
                }
        for m in self._owned:
            _close(m)
        self._owned = []

    def approximate_domains(self) -> list[str]:
        return sorted(self.approx | {d for m in self.info for d in m.get("approximate_domains", [])})

    @property
    def kept_out(self) -> bool:
        """True when estimates were kept out of the measured joules."""
        return bool(self._excluded_first)


def _close(meter: Meter) -> None:
    try:
        meter.close()
    except Exception:  # noqa: BLE001, S110 - closing a failed meter is best effort
        pass
