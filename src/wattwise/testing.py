"""Test helpers: a scripted meter with fault injection, for wattwise's tests and for yours.

:class:`FakeMeter` behaves like a hardware energy counter whose movement the test controls:
counters only move when the test says so (:meth:`FakeMeter.advance`, or ``joules_per_read``
joules at every read), and faults can be injected (a read that raises, a counter that goes
backwards, a counter that stalls). It is thread-safe and cheap, and it imports nothing heavy.

Example:
    >>> from wattwise.testing import FakeMeter
    >>> meter = FakeMeter(("gpu:0", "cpu:package-0"), joules_per_read=1.5)
    >>> meter.read().joules["gpu:0"]
    1.5
    >>> meter.advance({"gpu:0": 10.0})
    >>> dict(meter.read().joules)
    {'gpu:0': 13.0, 'cpu:package-0': 3.0}
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from wattwise.errors import ConfigurationError, MeterReadError
from wattwise.meters.base import Meter, Reading, Scope

__all__ = ["FakeMeter", "fake_rapl_zone", "set_rapl_energy"]


def _check_joules(where: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigurationError(f"{where}: expected a number of joules, got {value!r}")
    joules = float(value)
    if not math.isfinite(joules) or joules < 0:
        raise ConfigurationError(
            f"{where}: expected a finite number of joules >= 0, got {value!r} "
            "(use FakeMeter.go_backwards() to simulate a counter that decreases)"
        )
    return joules


class FakeMeter(Meter):
    """A meter with scripted cumulative counters and fault injection.

    Args:
        domains: domain names, e.g. ``("gpu:0",)`` or ``("cpu:package-0", "cpu:dram-0")``;
            default ``("fake:0",)``.
        joules_per_read: joules added to every domain at each successful :meth:`read`
            (before the reading is taken), default 0.0 J.
        estimated: whether readings claim to be estimates (like codecarbon), default False.
        scope: ``"node"`` or ``"device"``, default ``"node"``.
        update_period_s: the update period the meter advertises, in seconds (default 0.0).
            The fake does not quantise time itself; use :meth:`stall` to hold counters.
        name: backend name reported in summaries, default ``"fake"``.
        approximate_domains: domains to mark as power x time approximations in readings.

    Attributes:
        reads: number of successful :meth:`read` calls.
        closed: True after :meth:`close`.

    Raises:
        ConfigurationError: on an empty or duplicated domain list, a negative or
            non-finite ``joules_per_read`` or ``update_period_s``, or an unknown scope.
    """

    def __init__(
        self,
        domains: Iterable[str] = ("fake:0",),
        *,
        joules_per_read: float = 0.0,
        estimated: bool = False,
        scope: Scope = "node",
        update_period_s: float = 0.0,
        name: str = "fake",
        approximate_domains: Iterable[str] = (),
    ) -> None:
        if isinstance(domains, str):
            raise ConfigurationError(
                f"FakeMeter(domains={domains!r}): expected a sequence of domain names, "
                f"not a single string; use domains=({domains!r},)"
            )
        doms = tuple(domains)
        if (
            not doms
            or not all(isinstance(d, str) and d for d in doms)
            or len(set(doms)) != len(doms)
        ):
            raise ConfigurationError(
                f"FakeMeter(domains={doms!r}): expected one or more distinct non-empty "
                "domain names such as ('gpu:0', 'cpu:package-0')"
            )
        if scope not in ("node", "device"):
            raise ConfigurationError(f"FakeMeter(scope={scope!r}): expected 'node' or 'device'")
        upd = _check_joules("FakeMeter(update_period_s=...)", update_period_s)
        approx = frozenset(approximate_domains)
        if not approx <= set(doms):
            raise ConfigurationError(
                f"FakeMeter(approximate_domains={sorted(approx)!r}): every entry must be one "
                f"of domains={doms!r}"
            )
        self._domains = doms
        self._joules_per_read = _check_joules("FakeMeter(joules_per_read=...)", joules_per_read)
        self.estimated = bool(estimated)
        self.scope = scope
        self.update_period_s = upd
        self.name = str(name)
        self._approximate = approx
        self._lock = threading.Lock()
        self._counters: dict[str, float] = {d: 0.0 for d in doms}
        self._pending: dict[str, float] = {d: 0.0 for d in doms}
        self._stalled = False
        self._fail_after: int | None = None
        self._fail_exc: BaseException | None = None
        self.reads = 0
        self.closed = False

    @property
    def domains(self) -> tuple[str, ...]:
        """The domain names, in order."""
        return self._domains

    @property
    def counters(self) -> dict[str, float]:
        """The current counter values in joules (what the next read would show, before
        ``joules_per_read``), without counting as a read."""
        with self._lock:
            return dict(self._counters)

    # scripting -------------------------------------------------------------------------------
    def advance(self, joules: float | Mapping[str, float]) -> None:
        """Move counters forward.

        Args:
            joules: joules to add to every domain (a number) or per domain (a mapping; domains
                not named stay put). While :meth:`stall` is in effect the energy is held back
                and shows up at :meth:`resume`, like a counter that updates late.

        Raises:
            ConfigurationError: on negative or non-finite joules or an unknown domain.
        """
        if isinstance(joules, Mapping):
            unknown = set(joules) - set(self._domains)
            if unknown:
                raise ConfigurationError(
                    f"FakeMeter.advance(joules={dict(joules)!r}): unknown domain(s) "
                    f"{sorted(unknown)!r}; this meter has {self._domains!r}"
                )
            delta = {
                d: _check_joules("FakeMeter.advance(joules=...)", j) for d, j in joules.items()
            }
        else:
            j = _check_joules("FakeMeter.advance(joules=...)", joules)
            delta = {d: j for d in self._domains}
        with self._lock:
            target = self._pending if self._stalled else self._counters
            for d, j in delta.items():
                target[d] += j

    def go_backwards(self, joules: float) -> None:
        """Fault: every counter decreases by ``joules`` (joules > 0)."""
        j = _check_joules("FakeMeter.go_backwards(joules=...)", joules)
        with self._lock:
            for d in self._domains:
                self._counters[d] -= j

    def stall(self) -> None:
        """Fault: counters stop moving (``joules_per_read`` ignored, advances held back)."""
        with self._lock:
            self._stalled = True

    def resume(self) -> None:
        """End a :meth:`stall`: held-back advances appear at once."""
        with self._lock:
            self._stalled = False
            for d in self._domains:
                self._counters[d] += self._pending[d]
                self._pending[d] = 0.0

    def fail_on_read(self, after: int = 0, exc: BaseException | None = None) -> None:
        """Fault: after ``after`` more successful reads, every read raises.

        Args:
            after: successful reads still allowed (>= 0).
            exc: the exception to raise; default a :class:`~wattwise.errors.MeterReadError`.
                Anything else breaks the :class:`~wattwise.meters.Meter` contract on purpose.
        """
        if isinstance(after, bool) or not isinstance(after, int) or after < 0:
            raise ConfigurationError(
                f"FakeMeter.fail_on_read(after={after!r}): expected an int >= 0"
            )
        with self._lock:
            self._fail_after = after
            self._fail_exc = exc

    def recover(self) -> None:
        """Cancel :meth:`fail_on_read`."""
        with self._lock:
            self._fail_after = None
            self._fail_exc = None

    # Meter -----------------------------------------------------------------------------------
    def read(self) -> Reading:
        """Return the counters (after adding ``joules_per_read``), timestamped with
        ``time.monotonic()``.

        Raises:
            MeterReadError: when closed or when a failure was injected.
        """
        with self._lock:
            if self.closed:
                raise MeterReadError(f"FakeMeter(name={self.name!r}).read(): meter is closed")
            if self._fail_after is not None:
                if self._fail_after <= 0:
                    if self._fail_exc is not None:
                        raise self._fail_exc
                    raise MeterReadError(
                        f"FakeMeter(name={self.name!r}).read(): injected read failure"
                    )
                self._fail_after -= 1
            if not self._stalled and self._joules_per_read:
                for d in self._domains:
                    self._counters[d] += self._joules_per_read
            self.reads += 1
            return Reading(
                joules=dict(self._counters),
                time_s=time.monotonic(),
                estimated=self.estimated,
                approximate_domains=self._approximate,
            )

    def close(self) -> None:
        """Mark the meter closed (idempotent); later reads raise MeterReadError."""
        with self._lock:
            self.closed = True

    def describe(self) -> dict[str, object]:
        """Description for run summaries."""
        desc = super().describe()
        desc["notes"] = ["scripted fake meter (wattwise.testing.FakeMeter)"]
        if self._approximate:
            desc["approximate_domains"] = sorted(self._approximate)
        return desc

    def __repr__(self) -> str:
        return (
            f"FakeMeter(domains={self._domains!r}, joules_per_read={self._joules_per_read!r}, "
            f"estimated={self.estimated!r}, scope={self.scope!r}, "
            f"update_period_s={self.update_period_s!r}, name={self.name!r})"
        )


def fake_rapl_zone(folder: str | os.PathLike[str], name: str, energy_uj: int,
                   max_energy_range_uj: int = 262_143_328_850) -> Path:
    """A powercap zone folder for :class:`~wattwise.meters.RaplMeter` tests: ``name``,
    ``energy_uj`` (fixed width, so :func:`set_rapl_energy` rewrites it in place) and
    ``max_energy_range_uj``. Returns the folder.

    Example:
        >>> import tempfile
        >>> from wattwise.meters import RaplMeter
        >>> root = Path(tempfile.mkdtemp())
        >>> zone = fake_rapl_zone(root / "intel-rapl:0", "package-0", 1_000_000)
        >>> with RaplMeter(root) as m:
        ...     set_rapl_energy(zone, 3_000_000)
        ...     m.read().joules["cpu:package-0"]  # joules since the meter opened
        2.0
    """
    zone = Path(folder)
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj:020d}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_energy_range_uj}\n")
    return zone


def set_rapl_energy(zone: str | os.PathLike[str], energy_uj: int) -> None:
    """Overwrite a fake zone's counter in place with one ``pwrite`` (a meter's held file
    descriptor sees the new value)."""
    fd = os.open(Path(zone) / "energy_uj", os.O_WRONLY)
    try:
        os.pwrite(fd, f"{energy_uj:020d}\n".encode(), 0)
    finally:
        os.close(fd)

