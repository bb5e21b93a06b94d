"""The meter interface: cumulative energy counters, in joules, since the meter was opened."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import field
from types import TracebackType
from typing import Literal

from wattwise._record import record
from wattwise.errors import ConfigurationError

__all__ = ["Reading", "Meter", "Scope", "check_seconds"]

Scope = Literal["node", "device"]
"""``"node"``: a counter every process on the machine sees (RAPL, codecarbon); read it on one
process per node. ``"device"``: a counter of a device this process uses (one GPU)."""


@record
class Reading:
    """One reading of a meter.

    Attributes:
        joules: domain name (``"gpu:0"``, ``"cpu:package-0"``, ``"cpu:dram-0"``) -> joules
            accumulated since the meter was opened, counter wraps already unwrapped.
        time_s: ``time.monotonic()`` when the reading was taken, in seconds.
        estimated: True when the numbers are estimates, not hardware counter readings.
    """

    joules: Mapping[str, float]
    time_s: float
    estimated: bool = False
    approximate_domains: frozenset[str] = field(default_factory=frozenset)
    """Domains whose joules come from integrating sampled power (no energy counter)."""
    faults: Mapping[str, str] = field(default_factory=dict)
    """Domain -> what the meter itself saw go wrong with that counter since its previous read
    (a reset its background reader caught, see :mod:`wattwise.meters.faults`). The domain's
    joules are still cumulative and usable as the next baseline, but their movement since
    the previous read is not energy: the reader counts that window as unknown."""

    @property
    def total_joules(self) -> float:
        """Sum over all domains, in joules."""
        return float(sum(self.joules.values()))


class Meter(abc.ABC):
    """A source of cumulative energy readings.

    Subclasses open their hardware in ``__init__`` only after validating arguments when
    there is nothing to defer; they must be cheap to ``read()`` (called at window
    boundaries) and must never raise anything but :class:`~wattwise.errors.MeterReadError`
    from ``read()``.

    Attributes:
        name: short backend name (``"rapl"``, ``"nvml"``, ``"pyrapl"``, ``"codecarbon"``, ``"fake"``).
        scope: ``"node"`` or ``"device"`` (see :data:`Scope`).
        estimated: True when this meter's numbers are estimates.
        update_period_s: how often the underlying counter updates, in seconds; windows
            shorter than this can read 0 J and are never reported as 0 J. A counter that
            does not move for several periods is *stalled* (see
            :mod:`wattwise.meters.faults`); 0.0 claims nothing, so no stall check.
    """

    name: str = "meter"
    scope: Scope = "node"
    estimated: bool = False
    update_period_s: float = 0.0

    @property
    @abc.abstractmethod
    def domains(self) -> tuple[str, ...]:
        """The domain names this meter reports, in order."""

    @abc.abstractmethod
    def read(self) -> Reading:
        """Return the joules accumulated per domain since the meter was opened."""

    def max_power_w(self, domain: str) -> float | None:
        """The most power ``domain``'s device can plausibly draw, in watts, or None (no check).

        The plausibility check (:mod:`wattwise.meters.faults`) takes counter movement beyond
        this power over the elapsed time (plus a slack) as a reset, not as energy. Hardware
        counters return a generous bound (RAPL: the zone's power limits x a margin, else a
        per-zone default; NVML: the enforced board power limit x a margin, else a default);
        estimating meters and this base class return None.

        Args:
            domain: one of :attr:`domains`.
        """
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files, libraries and threads. Idempotent."""

    def describe(self) -> dict[str, object]:
        """A JSON-serialisable description for run summaries (name, domains, estimated, notes)."""
        return {
            "name": self.name,
            "scope": self.scope,
            "domains": list(self.domains),
            "estimated": self.estimated,
            "update_period_s": self.update_period_s,
        }

    def __enter__(self) -> Meter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def check_seconds(owner: str, value: object, fix: str, *, or_none: str = "") -> None:
    """Raise unless ``value`` is a positive number of seconds (bools and NaN refused).

    Args:
        owner: the class and argument, e.g. ``"RaplMeter(poll_interval_s"``.
        value: the value received.
        fix: how to fix it, e.g. ``"e.g. 0.1"``.
        or_none: what ``None`` would have meant, when the argument accepts it.

    Raises:
        ConfigurationError: naming ``owner`` and showing ``value``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        alt = f" or None ({or_none})" if or_none else ""
        raise ConfigurationError(
            f"{owner}={value!r}): expected a positive number of seconds{alt}. Fix: {fix}."
        )
