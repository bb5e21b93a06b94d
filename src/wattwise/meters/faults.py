"""Counters you can trust: the plausibility rules every energy counter is held to.

An energy counter only ever moves forward, by at most what its device can draw in the time
that passed, and a real one always moves: RAPL's package counter never reads exactly 0 W (a
CPU package draws watts even idle, and its counter updates about every millisecond in steps
of ~15-61 µJ), and NVML's board counter moves at every update (~0.1 s) because a powered GPU
draws tens of watts idle. So, per domain, between two readings:

- **backwards**: the cumulative value decreased (a driver reload, an NVML counter reset).
- **reset** / **implausible**: it moved by more than :func:`max_joules` (the device's
  :meth:`~wattwise.meters.Meter.max_power_w` x the elapsed time plus a slack): a RAPL counter
  set back to 0 that would unwrap to ~262 kJ, or a jump no hardware could produce. A meter
  that sees this itself (RAPL's background reader) says so in
  :attr:`~wattwise.meters.Reading.faults`.
- **stalled**: it did not move for longer than :func:`stall_after_s` (a stuck sysfs file, a
  hung driver); ``STALL_DROP_WINDOWS`` consecutive stalled windows drop the domain. Still
  for less than that (*quiet*), a reading gives no number: a window that measured nothing
  else is unknown, never a measured 0 J; one that moved before keeps its value. A counter
  that never moved in a whole stage longer than ``STALL_PERIODS`` update periods is reported
  stalled when the stage ends (:meth:`CounterCheck.never_moved_s`).

None of these is energy. The window they fall in is unknown for that domain (``None``, never a
number and never 0 J), the counter is re-based on the new value and measurement goes on;
other domains are not affected. A counter whose meter claims no update period (``0.0``, as
:class:`~wattwise.testing.FakeMeter` by default) is never stalled, and one whose meter gives no
:meth:`~wattwise.meters.Meter.max_power_w` (estimates, fakes) has no movement limit. :class:`CounterCheck` holds one domain's state; the
:class:`~wattwise.meterset.MeterSet` runs one per domain and turns verdicts into warnings.
"""

from __future__ import annotations

from wattwise._record import record

__all__ = [
    "SLACK_PERIODS",
    "SLACK_S",
    "STALL_DROP_WINDOWS",
    "STALL_MIN_S",
    "STALL_PERIODS",
    "CounterCheck",
    "Fault",
    "max_joules",
    "stall_after_s",
]

#: Slack on the elapsed time, in update periods: a counter that updates in steps can show up
#: to about one period of energy early or late at each end of a window.
SLACK_PERIODS = 2.0
#: Slack on the elapsed time, in seconds: the gap between reading a counter and taking its
#: timestamp (a descheduled thread, a garbage-collection pause).
SLACK_S = 0.5
#: A counter that has not moved for this many update periods (and ``STALL_MIN_S``) is stalled.
STALL_PERIODS = 3.0
#: ... and for at least this many seconds: a 1 ms RAPL counter is stalled after 1 s still.
STALL_MIN_S = 1.0
#: Consecutive stalled windows (each at least one update period long) after which the domain
#: is dropped: its values are None from then on, and the summary's meter info says when.
STALL_DROP_WINDOWS = 5


def max_joules(max_power_w: float, elapsed_s: float, period_s: float) -> float:
    """The most a counter can move in ``elapsed_s`` seconds, in joules:
    ``max_power_w * (elapsed_s + SLACK_PERIODS * period_s + SLACK_S)``.

    Example:
        >>> max_joules(1000.0, 1.0, 0.001)
        1502.0
    """
    return max_power_w * (max(elapsed_s, 0.0) + SLACK_PERIODS * period_s + SLACK_S)


def stall_after_s(period_s: float) -> float:
    """Seconds without movement after which a counter updating every ``period_s`` seconds is
    stalled: ``max(STALL_PERIODS * period_s, STALL_MIN_S)``.

    Example:
        >>> stall_after_s(0.5), stall_after_s(0.001)
        (1.5, 1.0)
    """
    return max(STALL_PERIODS * period_s, STALL_MIN_S)


@record
class Fault:
    """What went wrong with one domain's counter in one window.

    Attributes:
        kind: ``"reset"`` (the meter saw a reset, or the counter moved implausibly far),
            ``"backwards"``, ``"quiet"`` (did not move, not yet for a stall: this reading
            gives no number - a counter with an update period never reads a measured 0 J -
            but the window keeps what it measured; no warning), ``"stalled"`` (did not move
            for longer than :func:`stall_after_s`: the window is unknown), ``"resumed"`` (the first movement
            after a stall: it holds the stalled time's energy, so it is unknown too) or
            ``"dropped"`` (stalled for ``STALL_DROP_WINDOWS`` windows: no longer read).
        detail: what was seen, in words and numbers (for the warning and the summary).
    """

    kind: str
    detail: str


class CounterCheck:
    """The plausibility state of one domain's cumulative counter.

    Args:
        joules: the baseline reading, in joules.
        time_s: its ``time.monotonic()`` timestamp, in seconds.
        max_power_w: the device's most plausible power, in watts; None = no movement limit.
        period_s: the counter's update period, in seconds.
        stall_check: whether a counter that does not move is a fault (hardware counters with
            a known update period; not estimates, not fakes that claim no period).

    Example:
        >>> c = CounterCheck(0.0, 0.0, max_power_w=100.0, period_s=0.1, stall_check=True)
        >>> c.check(50.0, 1.0), c.last_joules
        (None, 50.0)
        >>> c.check(200_000.0, 2.0).kind, c.last_joules  # 200 kJ in 1 s at most 100 W
        ('reset', 200000.0)
        >>> c.check(200_000.0, 3.5).kind  # then 1.5 s without movement
        'stalled'
    """

    __slots__ = ("first_s", "last_joules", "last_s", "max_power_w", "moved", "moved_s",
                 "period_s", "stall_check", "stalled")

    def __init__(self, joules: float, time_s: float, *, max_power_w: float | None,
                 period_s: float, stall_check: bool) -> None:
        self.last_joules = float(joules)
        self.first_s = self.last_s = self.moved_s = float(time_s)
        self.max_power_w = max_power_w
        self.period_s = float(period_s)
        self.stall_check = stall_check and period_s > 0
        self.stalled = 0  # consecutive stalled windows (0: moving)
        self.moved = False  # moved (or faulted) since the baseline

    def check(self, joules: float, time_s: float, meter_fault: str | None = None
              ) -> Fault | None:
        """Judge the movement from the last reading to ``joules`` at ``time_s`` and re-base on
        it. None: the movement is energy; a :class:`Fault`: it is not (see :attr:`Fault.kind`
        for what each kind means to the window)."""
        delta = joules - self.last_joules
        elapsed = time_s - self.last_s
        self.last_joules, self.last_s = float(joules), float(time_s)
        if meter_fault is not None:
            return self._moved(time_s, Fault("reset", meter_fault))
        if delta < -1e-9 * max(1.0, abs(joules)):
            return self._moved(time_s, Fault(
                "backwards", f"the counter went backwards by {-delta:.6g} J"))
        limit = self.max_power_w
        if limit is not None and delta > max_joules(limit, elapsed, self.period_s):
            return self._moved(time_s, Fault(
                "reset", f"the counter moved {delta:.6g} J in {elapsed:.3g} s "
                f"({delta / max(elapsed, 1e-9):.6g} W; at most {limit:.6g} W is plausible)"))
        if delta > 0.0:
            was_stalled = self.stalled > 0
            self._moved(time_s, None)
            return Fault("resumed", "moved again after a stall") if was_stalled else None
        return self._still(time_s, elapsed)

    def _moved(self, time_s: float, fault: Fault | None) -> Fault | None:
        self.moved_s = time_s
        self.stalled = 0
        self.moved = True
        return fault

    def _still(self, time_s: float, elapsed: float) -> Fault | None:
        """No movement: never a number for a counter that claims an update period; a stall
        once it has been still for longer than :func:`stall_after_s`."""
        if not self.stall_check:
            return None
        still = time_s - self.moved_s
        if still <= stall_after_s(self.period_s):
            return Fault("quiet", f"the counter has not moved for {still:.3g} s")
        if elapsed >= self.period_s or self.stalled == 0:
            self.stalled += 1
        if self.stalled >= STALL_DROP_WINDOWS:
            return Fault("dropped", f"the counter has not moved for {still:.3g} s "
                         f"({self.stalled} windows in a row)")
        return Fault("stalled", f"the counter has not moved for {still:.3g} s (it updates "
                     f"every {self.period_s:g} s)")

    def never_moved_s(self) -> float | None:
        """Seconds from the baseline to the last reading when the counter never moved in
        them and they are more than ``STALL_PERIODS`` update periods (a whole stage is a
        window too: stalled however short the reads' gaps were), else None."""
        span = self.last_s - self.first_s
        if not self.stall_check or self.moved or span <= STALL_PERIODS * self.period_s:
            return None
        return span
