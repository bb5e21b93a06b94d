"""``MeterSet``: the meters of one stage, read as deltas; failures dropped with one warning.

Opens the meters a :class:`~wattwise.config.TrackerConfig` names (and takes the instances it
holds, node-wide ones only where ``node_meters``), keeps estimating meters out of the measured
joules when a hardware counter is in use, turns cumulative readings into per-domain deltas,
and closes only the meters it opened: instances the user passed belong to the user.

Every delta passes the plausibility rules of :mod:`wattwise.meters.faults` first, one
:class:`~wattwise.meters.faults.CounterCheck` per domain: a counter that went backwards, jumped
further than its device's :meth:`~wattwise.meters.Meter.max_power_w` allows, or stood still
(stalled) gives no number for that window; the domain is listed in :attr:`Deltas.unknown`
instead, with one :class:`~wattwise.errors.MeterWarning` per domain and kind of fault. Faults
are per domain: the meter's other domains keep measuring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Sequence
from typing import Any

from wattwise._warn import warn
from wattwise.config import TrackerConfig
from wattwise.errors import ConfigurationError, EstimateWarning, MeterWarning
from wattwise.meters.base import Meter, Reading
from wattwise.meters.faults import STALL_DROP_WINDOWS, CounterCheck, Fault

__all__ = ["Deltas", "MeterSet"]

#: The powercap folder RAPL meters opened by name read; tests point it at a fake tree.
RAPL_ROOT_ENV = "WATTWISE_RAPL_ROOT"


class Deltas(list[tuple[str, float]]):
    """What :meth:`MeterSet.deltas` returns: ``(domain, joules)`` pairs since the previous
    read, and in :attr:`unknown` the domains whose movement in this window is not energy (a
    fault, see :mod:`wattwise.meters.faults`): those have no pair, and the window's value for
    them is unknown, whatever else it holds (:meth:`wattwise.accounting.Ledger.feed`)."""

    __slots__ = ("unknown",)

    def __init__(self, pairs: Iterable[tuple[str, float]] = ()) -> None:
        super().__init__(pairs)
        self.unknown: set[str] = set()


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
        self._checks: dict[str, CounterCheck] = {}  # per domain: last reading, plausibility
        self._dead: set[str] = set()  # domains dropped for stalling
        self._warned: set[tuple[str, str]] = set()  # (domain, fault kind) already warned of
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
            if not m.estimated and (m.update_period_s > 0 or any(
                    m.max_power_w(d) is not None for d in m.domains)):
                info["faults"], info["dropped_domains"] = {}, {}  # a counter held to the rules
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
                    self._baseline(m, d, j, r.time_s)
                    periods[d] = m.update_period_s
        return periods

    def _baseline(self, m: Meter, domain: str, joules: float, time_s: float) -> None:
        self._checks[domain] = CounterCheck(
            joules, time_s, max_power_w=m.max_power_w(domain), period_s=m.update_period_s,
            stall_check=not m.estimated)

    def deltas(self, periods: dict[str, float], epoch: int | None = None) -> Deltas:
        """Read the active meters; (domain, joules since the previous read) per domain, and
        the faulted domains in :attr:`Deltas.unknown`. A domain seen for the first time is a
        baseline (its period is added to ``periods``). ``epoch``: the open window's, noted if
        a meter or domain is dropped."""
        self._epoch = epoch
        out = Deltas()
        checks, dead = self._checks, self._dead
        for m in tuple(self.active):
            r = self._read(m)
            if r is None:
                continue
            if r.approximate_domains:
                self.approx.update(r.approximate_domains)
            faults, t = r.faults, r.time_s
            for d, j in r.joules.items():
                c = checks.get(d)
                if c is None:  # first time we see this domain: baseline only
                    self._baseline(m, d, j, t)
                    periods.setdefault(d, m.update_period_s)
                    continue
                if dead and d in dead:
                    continue
                p = c.last_joules
                fault = c.check(j, t, faults.get(d) if faults else None)
                if fault is None:
                    out.append((d, j - p))
                elif fault.kind != "quiet":  # quiet: no number for this read, nothing more
                    out.unknown.add(d)
                    self._fault(m, d, fault)
        return out

    def _fault(self, meter: Meter, domain: str, fault: Fault) -> None:
        """Count a fault in the meter's info; warn once per domain and kind; drop a domain
        stalled for too long."""
        info = self._info_of.get(id(meter))
        if info is not None:  # copy on write: the summary writer thread may be reading it
            faults = info.get("faults") or {}
            counts = faults.get(domain, {})
            info["faults"] = {**faults, domain: {**counts, fault.kind: counts.get(fault.kind, 0) + 1}}
        if fault.kind == "dropped":
            self._drop_domain(meter, domain, fault.detail)
            return
        if fault.kind == "resumed" or (domain, fault.kind) in self._warned:
            return
        self._warned.add((domain, fault.kind))
        where = f"EnergyTracker: counter {domain!r} of meter {meter.name!r}"
        if fault.kind == "stalled":
            warn(f"{where} is STALLED: {fault.detail}. A real energy counter always moves over "
                 "a few update periods, so this is not 0 J: its windows are unknown (None) "
                 f"until it moves again; after {STALL_DROP_WINDOWS} stalled windows in a row "
                 "it is dropped", MeterWarning)
        else:
            warn(f"{where}: {fault.detail}. Taken as a counter reset (a driver reload, a "
                 "counter set back), not energy: this window's value for it is unknown "
                 "(None), the counter is re-based on the new reading and measurement "
                 "continues", MeterWarning)

    def _drop_domain(self, meter: Meter, domain: str, detail: str) -> None:
        """Stop using one stalled domain (one warning); a meter left with none is retired."""
        self._dead.add(domain)
        info = self._info_of.get(id(meter))
        reason = f"stalled: {detail}"
        if info is not None:
            info["dropped_domains"] = {**(info.get("dropped_domains") or {}), domain: {
                "reason": reason, "epoch": self._epoch, "after_s": time.monotonic() - self._t0}}
        warn(f"EnergyTracker: counter {domain!r} of meter {meter.name!r} dropped: {reason}; "
             "energy it measured before is kept, its values are None from now on", MeterWarning)
        if all(d in self._dead for d in meter.domains):
            self._retire(meter, f"every domain dropped ({reason})")

    def _read(self, meter: Meter) -> Reading | None:
        try:
            return meter.read()
        except Exception as e:  # noqa: BLE001 - a failing meter never kills training
            self.drop(meter, f"read failed: {type(e).__name__}: {e}")
            return None

    def drop(self, meter: Meter, reason: str) -> None:
        """Stop reading ``meter`` (one warning); what it measured so far is kept."""
        self._retire(meter, reason)
        warn(
            f"EnergyTracker: meter {meter.name!r} (domains {list(meter.domains)!r}) dropped: "
            f"{reason}; energy it measured so far is kept, its domains are None from now on",
            MeterWarning,
        )

    def _retire(self, meter: Meter, reason: str) -> None:
        """Stop reading ``meter``, note why and when in its info, close it if we opened it."""
        for group in (self.active, self.excluded):
            if any(meter is m for m in group):
                group.remove(meter)
        info = self._info_of.get(id(meter))
        if info is not None:
            info["dropped"] = {"reason": reason, "epoch": self._epoch,
                               "after_s": time.monotonic() - self._t0}
        if any(meter is m for m in self._owned):
            _close(meter)

    def _report_never_moved(self) -> None:
        """At the end of the stage, after its last read: a counter that never moved in it is
        stalled however short the gaps between reads were (one warning; its windows had no
        number already)."""
        for m in self.active:
            for d in m.domains:
                c = self._checks.get(d)
                span = None if c is None or d in self._dead else c.never_moved_s()
                if c is None or span is None or (d, "stalled") in self._warned:
                    continue
                c.moved = True  # reported once
                self._fault(m, d, Fault("stalled", f"it never moved in the {span:.3g} s of "
                                        f"this stage (it updates every {c.period_s:g} s)"))

    def close(self) -> None:
        """Report counters that never moved, read the excluded estimates' totals, then close
        the meters this set opened."""
        self._report_never_moved()
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
