"""RAPL energy counters through the Linux powercap sysfs interface.

Zones are identified by their ``name`` file (``package-N``, ``dram``, ``psys``), never by
their index. ``intel-rapl-mmio:*`` duplicates and the ``core``/``uncore`` subzones (which
are already inside ``package-N``) are never counted. AMD Zen CPUs expose the same
``intel-rapl`` zones with package energy only.

The counters (``energy_uj``, µJ) wrap at ``max_energy_range_uj``. A daemon thread reads
them often enough (a quarter of the shortest wrap time at a generous maximum power) that
every wrap is seen, so gaps between :meth:`RaplMeter.read` calls may be arbitrarily long.

A decrease is a wrap only when the unwrapped movement is plausible: at most the zone's
:meth:`RaplMeter.max_power_w` over the time since the previous sample (see
:func:`wattwise.meters.faults.max_joules`). A counter set back to 0 after 2 J would unwrap to
~262 kJ in a fraction of a second: that is a *reset* (a driver reload), so the sample is not
counted, the counter is re-based, and the next :class:`~wattwise.meters.Reading` names the
domain in ``faults``. An upward jump beyond the same bound is treated the same way.
"""

from __future__ import annotations

import errno
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path

from wattwise.errors import ConfigurationError, MeterReadError, MeterUnavailableError
from wattwise.meters._poller import Poller
from wattwise.meters.base import Meter, Reading, check_seconds
from wattwise.meters.faults import max_joules

__all__ = ["RAPL_PERMISSION_HELP", "RaplMeter"]

_ZONE_RE = re.compile(r"^intel-rapl:(\d+)$")
_SUBZONE_RE = re.compile(r"^intel-rapl:(\d+):(\d+)$")
_PACKAGE_RE = re.compile(r"^package-(\d+)$")

#: A generous upper bound on the power of one RAPL zone, in watts, used to choose the
#: background poll interval (the wrap period at this power, divided by 4).
MAX_ZONE_POWER_W = 1000.0
#: The most power a zone is taken to draw when it publishes no power limit, in watts, by the
#: zone's ``name``: above the largest server parts (500 W TDP packages; 24 DDR5 DIMMs draw
#: ~360 W). Other names get :data:`MAX_ZONE_POWER_W`.
DEFAULT_MAX_POWER_W = {"package": 1000.0, "dram": 500.0, "psys": 1000.0, "core": 1000.0,
                       "uncore": 500.0}
#: A zone's published limits (``constraint_*_max_power_uw``: the most each power limit may be
#: set to) times this factor is its plausible maximum: short bursts (PL2, PL4) run above the
#: long-term limit.
LIMIT_MARGIN = 2.0
_MIN_AUTO_POLL_S = 0.005
#: How often RAPL counters update, in seconds (about every millisecond).
UPDATE_PERIOD_S = 0.001
_MAX_AUTO_POLL_S = 60.0

RAPL_PERMISSION_HELP = (
    "Since CVE-2020-8694 (Platypus, fixed in Linux 5.10 and backported) the RAPL "
    "energy_uj files are readable by root only (the name files stay world-readable). "
    "Fix: grant a group read access with a udev rule, e.g. "
    '\'SUBSYSTEM=="powercap", ACTION=="add", RUN+="/bin/chgrp -R power /sys%p", '
    'RUN+="/bin/chmod -R g+r /sys%p"\' in /etc/udev/rules.d/99-rapl.rules, or a sysfsutils '
    "entry 'mode class/powercap/intel-rapl:0/energy_uj = 0440' in /etc/sysfs.conf; "
    "or run as root (in a container: mount /sys/class/powercap read-only and run as root "
    "inside). See docs/meters.md."
)

Opener = Callable[[str], int]


def _default_opener(path: str) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _pread_int(fd: int) -> int:
    return int(os.pread(fd, 32, 0))


def zone_max_power_w(folder: Path, kind: str) -> float:
    """A zone's plausible maximum power, in watts: the largest of its
    ``constraint_*_max_power_uw`` files times :data:`LIMIT_MARGIN`, else the default for its
    kind (:data:`DEFAULT_MAX_POWER_W`)."""
    limits_uw: list[int] = []
    for f in folder.glob("constraint_*_max_power_uw"):
        text = _read_text(f)
        if text is not None and text.isdigit() and int(text) > 0:
            limits_uw.append(int(text))
    if limits_uw:
        return max(limits_uw) / 1e6 * LIMIT_MARGIN
    return DEFAULT_MAX_POWER_W.get(kind, MAX_ZONE_POWER_W)


class _Zone:
    """One counter: a held file descriptor plus its unwrapping state (guarded by the meter lock)."""

    __slots__ = ("domain", "fault", "fd", "last_s", "last_uj", "max_power_w", "max_range_uj",
                 "path", "resets", "total_uj", "wraps")

    def __init__(self, domain: str, path: Path, fd: int, max_range_uj: int, first_uj: int,
                 max_power_w: float) -> None:
        self.domain = domain
        self.path = path
        self.fd = fd
        self.max_range_uj = max_range_uj
        self.max_power_w = max_power_w
        self.last_uj = first_uj
        self.last_s = time.monotonic()
        self.total_uj = 0
        self.wraps = 0
        self.resets = 0
        self.fault: str | None = None  # a reset seen since the last read(), for its Reading

    def update(self, raw_uj: int, now_s: float) -> None:
        delta_uj = raw_uj - self.last_uj
        wrapped = delta_uj < 0
        if wrapped:  # one wrap (the poll thread makes sure there is at most one) ...
            delta_uj += self.max_range_uj
        elapsed_s = now_s - self.last_s
        if delta_uj > max_joules(self.max_power_w, elapsed_s, UPDATE_PERIOD_S) * 1e6:
            # ... unless that is more than the zone can draw: a reset, not energy
            self.resets += 1
            if self.fault is None:
                how = (f"fell from {self.last_uj} to {raw_uj} µJ (as a wrap: "
                       if wrapped else f"jumped from {self.last_uj} to {raw_uj} µJ (")
                self.fault = (
                    f"RAPL counter {how}{delta_uj / 1e6:.6g} J in {elapsed_s:.3g} s, more than "
                    f"{self.max_power_w:.6g} W can give)")
        else:
            self.total_uj += delta_uj
            self.wraps += wrapped
        self.last_uj = raw_uj
        self.last_s = now_s


def _close_fds(fds: list[int], stop: threading.Event) -> None:
    stop.set()
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass
    fds.clear()


class RaplMeter(Meter):
    """CPU package (and DRAM) energy from RAPL powercap counters, in joules since opening.

    The meter opens the ``energy_uj`` file of each zone once and re-reads it with
    ``os.pread``. Construction opens the counters and starts the background poll thread;
    :meth:`close` stops it and closes the files.

    Args:
        root: the powercap sysfs folder (default ``"/sys/class/powercap"``); tests pass a
            tree written under a temporary folder.
        include_psys: also report the ``psys`` (platform) zone as ``cpu:psys``; it overlaps
            package and DRAM, so do not add it to them. Default False.
        poll_interval_s: seconds between background reads that catch counter wraps. None
            (default) picks a quarter of the shortest wrap time at
            :data:`MAX_ZONE_POWER_W` watts, clamped to [0.005, 60] s.
        opener: ``opener(path) -> fd`` used to open ``energy_uj`` files (default
            ``os.open`` read-only); for tests of permission handling.

    Raises:
        ConfigurationError: ``poll_interval_s`` is not a positive number.
        MeterUnavailableError: no RAPL zone under ``root``, or ``energy_uj`` unreadable
            (the message explains the root-only rule and the fixes).

    Example:
        >>> from wattwise.meters import RaplMeter
        >>> with RaplMeter() as meter:  # doctest: +SKIP
        ...     print(meter.read().joules)  # {'cpu:package-0': 0.0012, 'cpu:dram-0': 0.0003}
    """

    name = "rapl"
    scope = "node"
    estimated = False
    update_period_s = UPDATE_PERIOD_S

    def __init__(
        self,
        root: str | os.PathLike[str] = "/sys/class/powercap",
        *,
        include_psys: bool = False,
        poll_interval_s: float | None = None,
        opener: Opener | None = None,
    ) -> None:
        if poll_interval_s is not None:
            check_seconds(
                "RaplMeter(poll_interval_s", poll_interval_s, "pass e.g. 1.0 or None",
                or_none="automatic, from the wrap period",
            )
        if not isinstance(include_psys, bool):
            raise ConfigurationError(
                f"RaplMeter(include_psys={include_psys!r}): expected True or False."
            )
        self._root = Path(root)
        self._include_psys = include_psys
        self._opener: Opener = opener or _default_opener
        self._lock = threading.Lock()
        self._closed = False
        self._poll_error: BaseException | None = None
        self._fds: list[int] = []
        self._poller = Poller("wattwise-rapl-poll")
        self._finalizer = weakref.finalize(self, _close_fds, self._fds, self._poller.stopped)
        try:
            self._zones = self._open_zones()
        except BaseException:
            self._finalizer()
            raise
        self._domains = tuple(z.domain for z in self._zones)
        self._max_power = {z.domain: z.max_power_w for z in self._zones}
        if poll_interval_s is None:
            min_range_j = min(z.max_range_uj for z in self._zones) / 1e6
            poll_interval_s = min(
                max(min_range_j / MAX_ZONE_POWER_W / 4.0, _MIN_AUTO_POLL_S), _MAX_AUTO_POLL_S
            )
        self.poll_interval_s = float(poll_interval_s)
        self._poller.start(self._poll, self.poll_interval_s)

    # opening ---------------------------------------------------------------------------
    def _unavailable(self, why: str) -> MeterUnavailableError:
        return MeterUnavailableError(f"RaplMeter(root={str(self._root)!r}): {why}")

    def _find_zones(self) -> list[tuple[str, Path]]:
        """(domain, zone folder) for package, DRAM and (opt-in) psys zones, by ``name``."""
        root = self._root
        if not root.is_dir():
            raise self._unavailable(
                "no powercap folder here, so no RAPL counters (a VM, a non-Linux system, a CPU "
                "without RAPL, or the intel_rapl_common / amd_energy driver not loaded). "
                "Fix: on bare metal run 'modprobe intel_rapl_common' (Intel) or use a kernel "
                ">= 5.11 (AMD Zen 3/4); otherwise use another meter (nvml, codecarbon)."
            )
        found: list[tuple[str, Path]] = []
        seen: set[str] = set()
        for entry in sorted(root.iterdir(), key=lambda p: p.name):
            m = _ZONE_RE.match(entry.name)  # intel-rapl-mmio:* never matches: duplicates
            if not m:
                continue
            zone_name = _read_text(entry / "name")
            if zone_name is None:
                continue
            pkg = _PACKAGE_RE.match(zone_name)
            if pkg:
                domain = f"cpu:package-{pkg.group(1)}"
                if domain in seen:
                    continue
                seen.add(domain)
                found.append((domain, entry))
                for sub in self._subzones(entry, m.group(1)):
                    if _read_text(sub / "name") == "dram":  # core/uncore are inside package
                        d = f"cpu:dram-{pkg.group(1)}"
                        if d not in seen:
                            seen.add(d)
                            found.append((d, sub))
            elif zone_name == "psys" and self._include_psys and "cpu:psys" not in seen:
                seen.add("cpu:psys")
                found.append(("cpu:psys", entry))
        if not any(d.startswith("cpu:package-") for d, _ in found):
            raise self._unavailable(
                "no RAPL package zone (an 'intel-rapl:N' folder whose name file says "
                "'package-N'). Fix: check that the intel_rapl_common driver is loaded, or use "
                "another meter (nvml, codecarbon)."
            )
        return found

    def _subzones(self, zone: Path, index: str) -> list[Path]:
        subs: dict[str, Path] = {}
        for base in (zone, self._root):  # children of the zone; top-level links as fallback
            try:
                entries = sorted(base.iterdir(), key=lambda p: p.name)
            except OSError:
                continue
            for e in entries:
                sm = _SUBZONE_RE.match(e.name)
                if sm and sm.group(1) == index and e.name not in subs:
                    subs[e.name] = e
        return list(subs.values())

    def _open_zones(self) -> list[_Zone]:
        zones: list[_Zone] = []
        for domain, folder in self._find_zones():
            energy_path = folder / "energy_uj"
            range_path = folder / "max_energy_range_uj"
            try:
                fd = self._opener(str(energy_path))
            except PermissionError as e:
                raise self._unavailable(
                    f"permission denied opening {str(energy_path)!r}. {RAPL_PERMISSION_HELP}"
                ) from e
            except OSError as e:
                raise self._unavailable(
                    f"cannot open {str(energy_path)!r}: {e.strerror or e}. Fix: check that the "
                    "zone has a readable energy_uj file."
                ) from e
            self._fds.append(fd)
            try:
                first_uj = _pread_int(fd)
            except PermissionError as e:
                raise self._unavailable(
                    f"permission denied reading {str(energy_path)!r}. {RAPL_PERMISSION_HELP}"
                ) from e
            except (OSError, ValueError) as e:
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                if isinstance(e, OSError) and e.errno == errno.EACCES:
                    why += ". " + RAPL_PERMISSION_HELP
                raise self._unavailable(
                    f"cannot read an energy value in microjoules from {str(energy_path)!r}: "
                    f"{why}. Fix: check the powercap driver, or use another meter."
                ) from e
            try:
                max_range_uj = int(range_path.read_text())
            except (OSError, ValueError) as e:
                raise self._unavailable(
                    f"cannot read {str(range_path)!r} ({e}); without it counter wraps cannot be "
                    "unwrapped. Fix: check the powercap driver, or use another meter."
                ) from e
            if max_range_uj <= 0:
                raise self._unavailable(
                    f"{str(range_path)!r} says {max_range_uj!r}; expected a positive number of "
                    "microjoules. Fix: check the powercap driver, or use another meter."
                )
            kind = _read_text(folder / "name") or ""
            kind = "package" if kind.startswith("package-") else kind
            zones.append(_Zone(domain, folder, fd, max_range_uj, first_uj,
                               zone_max_power_w(folder, kind)))
        return zones

    # reading ---------------------------------------------------------------------------
    @property
    def domains(self) -> tuple[str, ...]:
        """``cpu:package-N``, ``cpu:dram-N`` (when present), ``cpu:psys`` (opt-in)."""
        return self._domains

    def max_power_w(self, domain: str) -> float | None:
        """The zone's plausible maximum power, in watts: its largest
        ``constraint_*_max_power_uw`` x :data:`LIMIT_MARGIN`, else
        :data:`DEFAULT_MAX_POWER_W` for its kind; None for an unknown domain."""
        return self._max_power.get(domain)

    def _sample_locked(self) -> None:
        for z in self._zones:
            try:
                raw_uj = _pread_int(z.fd)
            except (OSError, ValueError) as e:
                raise MeterReadError(
                    f"RaplMeter: cannot read {str(z.path / 'energy_uj')!r}: {e}"
                ) from e
            z.update(raw_uj, time.monotonic())

    def _poll(self) -> None:
        """Read every counter once and accumulate (the background thread's work)."""
        with self._lock:
            if self._closed:
                return
            try:
                self._sample_locked()
            except MeterReadError as e:
                self._poll_error = e
                raise

    def read(self) -> Reading:
        """Read the counters now; joules per domain since the meter was opened.

        Raises:
            MeterReadError: a counter could not be read (now or by the poll thread), or the
                meter is closed.
        """
        with self._lock:
            if self._closed:
                raise MeterReadError("RaplMeter.read(): the meter is closed")
            if self._poll_error is not None:
                raise MeterReadError(
                    f"RaplMeter: the background reader failed ({self._poll_error}); wraps may "
                    "have been missed"
                ) from self._poll_error
            self._sample_locked()
            t = time.monotonic()
            joules = {z.domain: z.total_uj / 1e6 for z in self._zones}
            faults = {z.domain: z.fault for z in self._zones if z.fault is not None}
            if faults:
                for z in self._zones:
                    z.fault = None
        return Reading(joules=joules, time_s=t, estimated=False, faults=faults)

    @property
    def wraps(self) -> dict[str, int]:
        """Counter wraps seen so far, per domain."""
        with self._lock:
            return {z.domain: z.wraps for z in self._zones}

    @property
    def resets(self) -> dict[str, int]:
        """Counter resets (decreases or jumps too large to be energy) seen so far, per domain."""
        with self._lock:
            return {z.domain: z.resets for z in self._zones}

    def close(self) -> None:
        """Stop the poll thread and close the counter files. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # a poll in flight sees it under the lock and does nothing
        self._poller.stop()
        with self._lock:
            self._finalizer()

    def describe(self) -> dict[str, object]:
        """Name, domains, zone folders, wrap ranges (joules), plausible maximum power per
        domain (watts), poll interval and notes."""
        d = super().describe()
        d.update(
            root=str(self._root),
            zones={z.domain: str(z.path) for z in self._zones},
            max_energy_range_joules={z.domain: z.max_range_uj / 1e6 for z in self._zones},
            max_power_w=dict(self._max_power),
            poll_interval_s=self.poll_interval_s,
            notes=[
                "node-wide counters: read them on one process per node",
                (
                    "core/uncore subzones are inside package and not reported; "
                    "intel-rapl-mmio duplicates are ignored"
                ),
            ]
            + (
                ["cpu:psys overlaps package and DRAM: do not add them"]
                if self._include_psys
                else []
            ),
        )
        return d

    def __repr__(self) -> str:
        return f"RaplMeter(root={str(self._root)!r}, domains={self._domains!r})"
