"""The accounting core: windows, epochs, totals and steps of one stage, from counter deltas.

A :class:`Ledger` is fed the counters' movement since the previous reading
(:meth:`Ledger.feed`) and gives it, with the elapsed time, to exactly one place: the innermost
open window, or ``other`` (time outside any window). So the windows of all phases plus
``other`` add up to the counters' movement. Windows nest: a ``validate`` window opened while a
``train`` window is open pauses it. No meters, no clocks, no files: the tracker brings those.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wattwise.errors import ConfigurationError
from wattwise.records import EpochRecord, PhaseRecord, StepRecord

__all__ = ["PHASES", "Acc", "Ledger", "RecordContext", "restore_state"]

PHASES: tuple[str, ...] = ("train", "validate", "test", "predict")
_J_PER_KWH = 3.6e6
STATE_VERSION = 2


class Acc:
    """Running sums of one window or phase: joules per observed domain, seconds, counts.

    ``samples_unknown`` is True once a batch whose samples could not be counted was added.
    ``unknown`` holds the domains whose counter had a fault (a reset, a stall: see
    :mod:`wattwise.meters.faults`) in a reading of these sums: their joules here are not the
    energy, so records say None for them. It carries over in :meth:`add`, so a phase total
    is unknown for a domain unknown in any of its windows (a sum with a hole is not the
    energy; the known windows keep their values in their own records).
    """

    __slots__ = ("batches", "joules", "samples", "samples_unknown", "seconds", "unknown")

    def __init__(self) -> None:
        self.joules: dict[str, float] = {}  # a domain is present once a delta was observed
        self.seconds = 0.0
        self.samples = 0
        self.batches = 0
        self.samples_unknown = False
        self.unknown: set[str] = set()

    def add(self, other: Acc) -> Acc:
        for d, j in other.joules.items():
            self.joules[d] = self.joules.get(d, 0.0) + j
        self.seconds += other.seconds
        self.samples += other.samples
        self.batches += other.batches
        self.samples_unknown |= other.samples_unknown
        if other.unknown:
            self.unknown |= other.unknown
        return self

    def copy(self) -> Acc:
        return Acc().add(self)

    def state(self) -> dict[str, Any]:
        """The sums as JSON-ready values; ``unknown`` (a sorted list) only when not empty."""
        out: dict[str, Any] = {
            "joules": dict(self.joules),
            "seconds": self.seconds,
            "samples": None if self.samples_unknown else self.samples,
            "batches": self.batches,
        }
        if self.unknown:
            out["unknown"] = sorted(self.unknown)
        return out

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> Acc:
        """The sums from :meth:`state` (a state without ``unknown`` has none)."""
        acc = cls()
        acc.joules = {str(d): float(j) for d, j in s["joules"].items()}
        acc.seconds, acc.batches = float(s["seconds"]), int(s["batches"])
        acc.samples_unknown = s["samples"] is None
        acc.samples = 0 if acc.samples_unknown else int(s["samples"])
        unknown = s.get("unknown", [])
        if not isinstance(unknown, list) or not all(isinstance(d, str) for d in unknown):
            raise ValueError(f"'unknown' must be a list of domain names, got {unknown!r}")
        acc.unknown = set(unknown)
        return acc


@dataclass
class RecordContext:
    """What turns sums into a :class:`PhaseRecord`: each domain's counter update period (a
    domain that did not move in a window shorter than that is unknown, not 0 J; a domain in
    :attr:`Acc.unknown` is unknown too), idle watts, carbon intensity, and whether the joules
    are estimates."""

    periods: dict[str, float] = field(default_factory=dict)
    idle_w: dict[str, float | None] = field(default_factory=dict)
    idle_measured: bool = False
    carbon_g_per_kwh: float | None = None
    estimated: bool = False

    def domain_joules(self, acc: Acc) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        unknown = acc.unknown
        for d, period in self.periods.items():
            j = acc.joules.get(d)
            out[d] = (None if j is None or (j == 0.0 and acc.seconds < period)
                      or (unknown and d in unknown) else j)
        return out

    def record(self, phase: str, epoch: int, acc: Acc) -> PhaseRecord:
        by_domain = self.domain_joules(acc)
        known = {d: j for d, j in by_domain.items() if j is not None}
        joules = sum(known.values()) if known else None
        active = None
        if joules is not None and self.idle_measured:
            idle = [w for d in known if (w := self.idle_w.get(d)) is not None]
            if len(idle) == len(known):
                active = joules - sum(idle) * acc.seconds
        carbon = self.carbon_g_per_kwh
        return PhaseRecord.from_sums(
            phase,
            epoch,
            joules=joules,
            joules_by_domain=by_domain,
            seconds=acc.seconds,
            samples=None if acc.samples_unknown else acc.samples,
            batches=acc.batches,
            estimated=self.estimated,
            active_joules=active,
            co2_g=None if joules is None or carbon is None else joules * carbon / _J_PER_KWH,
        )


def restore_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a :meth:`Ledger.state_dict` (version 1 or 2); ConfigurationError otherwise."""
    try:
        if isinstance(state["version"], bool) or state["version"] not in (1, STATE_VERSION):
            raise ValueError(f"unknown version {state['version']!r}")
        open_epoch = state.get("open_epoch")
        return {
            "epochs": int(state["epochs"]),
            "totals": {str(k): Acc.from_state(v) for k, v in state["totals"].items()},
            "open_epoch": None if not open_epoch else (
                int(open_epoch["epoch"]),
                {str(p): Acc.from_state(a) for p, a in open_epoch["phases"].items()},
            ),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigurationError(
            f"EnergyTracker.load_state_dict(state={state!r}): not a state from "
            f"EnergyTracker.state_dict() ({type(e).__name__}: {e})"
        ) from e


class _Window:
    __slots__ = ("acc", "epoch", "phase", "plan", "start")

    def __init__(self, phase: str, epoch: int, plan: Any = None, start: int = 0) -> None:
        self.phase, self.epoch, self.acc = phase, epoch, Acc()
        self.plan, self.start = plan, start  # planned samples: batches start.. of the pass

    def settle(self) -> None:
        """A planned window's samples from its batch count (the hot path only counts)."""
        if self.plan is not None:
            self.acc.samples = self.plan.samples(self.start, self.start + self.acc.batches)


class Ledger:
    """The accounting of one stage (a ``fit``, ``validate``, ``test`` or ``predict`` call).

    Args:
        ctx: how sums become records (shared with the tracker, which fills in the domains).
        stage: the stage name; ``stage_index`` its place in the run.
        t0: the time of the stage's first reading, in seconds (``time.monotonic()``).
        restored: a :func:`restore_state` result: totals, complete epochs and the partial
            epoch a mid-epoch checkpoint was taken in, continued when that epoch is reopened.
    """

    def __init__(self, ctx: RecordContext, stage: str, stage_index: int, t0: float,
                 restored: Mapping[str, Any] | None = None) -> None:
        self.ctx, self.stage, self.stage_index = ctx, stage, stage_index
        self.restored = restored
        self._resume = restored["open_epoch"] if restored else None
        self.current: Acc | None = None  # the innermost open window's sums (the hot path's)
        self.planned = False  # the innermost window's samples come from a LoaderPlan
        self._stack: list[_Window] = []
        self.other = Acc()
        self._totals: dict[str, Acc] = {}
        self._epoch_accs: dict[str, Acc] = {}
        self._epoch_recs: dict[str, PhaseRecord | None] = {}  # a one-window phase's record
        self._epoch_num: int | None = None
        self.epochs: list[EpochRecord] = []
        self.epochs_done = 0
        self._step = Acc()
        self._step_t = self._t = t0
        self._step_base = (0, 0)
        self._step_index: dict[str, int] = {}

    # feeding ---------------------------------------------------------------------------------
    def feed(self, deltas: Iterable[tuple[str, float]], t: float,
             unknown: Collection[str] | None = None) -> None:
        """Give counter deltas (domain, joules) and the time since the last feed to the
        innermost open window, or to ``other``, and to the step window.

        Args:
            unknown: domains whose counter had a fault in this reading: the window (and the
                step window) is unknown for them, whatever else it was fed.
        """
        acc = self.current if self.current is not None else self.other
        step = self._step.joules
        for d, j in deltas:
            acc.joules[d] = acc.joules.get(d, 0.0) + j
            step[d] = step.get(d, 0.0) + j
        acc.seconds += t - self._t
        self._t = t
        if unknown:
            acc.unknown.update(unknown)
            self._step.unknown.update(unknown)

    # windows ---------------------------------------------------------------------------------
    @property
    def phase(self) -> str | None:
        """The innermost open window's phase, or None."""
        return self._stack[-1].phase if self._stack else None

    @property
    def epoch(self) -> int | None:
        """The innermost open window's epoch, or None."""
        return self._stack[-1].epoch if self._stack else None

    def open(self, phase: str, epoch: int, plan: Any = None) -> None:
        """Open a window (after a feed); a mid-epoch checkpoint's partial epoch is continued.
        With ``plan`` (a :class:`~wattwise.samples.LoaderPlan`: batch ``i`` of the pass holds
        ``plan.samples(i, i + 1)``), batches are only counted and the samples follow from
        where in the pass the window began (the batches of the phase in this epoch so far)."""
        if self._resume is not None and self._resume[0] == epoch and not self._epoch_accs:
            self._epoch_accs = {p: a.copy() for p, a in self._resume[1].items()}
            self._epoch_recs = dict.fromkeys(self._epoch_accs)
            self._epoch_num = epoch
        self._resume = None
        start = 0
        if plan is not None:
            done = self._epoch_accs.get(phase)
            start = (done.batches if done is not None else 0) + sum(
                x.acc.batches for x in self._stack if x.phase == phase)
        w = _Window(phase, epoch, plan, start)
        self._stack.append(w)
        self.current = w.acc
        self.planned = plan is not None
        self._reset_step()

    def close(self) -> PhaseRecord:
        """Close the innermost window (after a feed) and return its record."""
        w = self._stack.pop()
        w.settle()
        self.current = self._stack[-1].acc if self._stack else None
        self.planned = bool(self._stack) and self._stack[-1].plan is not None
        rec = self.ctx.record(w.phase, w.epoch, w.acc)
        self._step_index[w.phase] = self._step_index.get(w.phase, 0) + w.acc.batches
        if w.phase in self._epoch_accs:
            self._epoch_accs[w.phase].add(w.acc)
            self._epoch_recs[w.phase] = None  # several windows: summed at the epoch end
        else:
            self._epoch_accs[w.phase] = w.acc.copy()
            self._epoch_recs[w.phase] = rec
        self._totals.setdefault(w.phase, Acc()).add(w.acc)
        self._epoch_num = w.epoch
        self._reset_step()
        return rec

    def end_epoch(self, *, complete: bool = True) -> EpochRecord:
        """Close open windows (after a feed) and the epoch."""
        while self._stack:
            self.close()
        epoch = self._epoch_num if self._epoch_num is not None else self.epochs_done
        phases = {
            p: self._epoch_recs.get(p) or self.ctx.record(p, epoch, acc)
            for p, acc in self._epoch_accs.items()
        }
        known = [r.joules for r in phases.values() if r.joules is not None]
        rec = EpochRecord(
            epoch=epoch, phases=phases, joules=sum(known) if known else None,
            seconds=sum(r.seconds for r in phases.values()), stage=self.stage,
            stage_index=self.stage_index, complete=complete,
        )
        self.epochs.append(rec)
        self.epochs_done += complete
        self._epoch_accs, self._epoch_recs, self._epoch_num = {}, {}, None
        return rec

    @property
    def depth(self) -> int:
        """How many windows are open."""
        return len(self._stack)

    def next_epoch(self) -> int:
        """The epoch a window opened now belongs to: the open epoch's, else a mid-epoch
        checkpoint's, else the one after this stage's last epoch, else the complete epochs so
        far (a restored run's count, 0 for a fresh one)."""
        if self._stack:
            return self._stack[-1].epoch
        if self._epoch_num is not None:
            return self._epoch_num
        if self._resume is not None:
            return int(self._resume[0])
        return self.epochs[-1].epoch + 1 if self.epochs else self.epochs_completed()

    @property
    def resume_epoch(self) -> int | None:
        """The epoch a mid-epoch checkpoint was taken in, until a window continues it."""
        return None if self._resume is None else self._resume[0]

    @property
    def epoch_open(self) -> bool:
        return bool(self._stack or self._epoch_accs)

    # steps -----------------------------------------------------------------------------------
    def _reset_step(self) -> None:
        self._step = Acc()
        self._step_t = self._t
        if self._stack:
            self._stack[-1].settle()
        acc = self.current
        self._step_base = (acc.samples, acc.batches) if acc is not None else (0, 0)

    @property
    def step_started_s(self) -> float:
        return self._step_t

    def step(self) -> StepRecord | None:
        """The step window since the last one (after a feed); None when no window is open."""
        if not self._stack:
            return None
        w = self._stack[-1]
        w.settle()
        seconds = self._t - self._step_t
        known = [j for j in self.ctx.domain_joules(self._step).values() if j is not None]
        self._step.seconds = seconds
        joules = sum(known) if known else None
        samples = None if w.acc.samples_unknown else w.acc.samples - self._step_base[0]
        batches = w.acc.batches - self._step_base[1]
        rec = StepRecord(
            phase=w.phase, epoch=w.epoch,
            step=self._step_index.get(w.phase, 0) + w.acc.batches - 1,
            joules=joules, seconds=seconds, samples=samples, batches=batches,
            estimated=self.ctx.estimated,
            joules_per_sample=joules / samples if joules is not None and samples else None,
            watts=joules / seconds if joules is not None and seconds > 0 else None,
        )
        self._reset_step()
        return rec

    # totals and checkpoints ------------------------------------------------------------------
    def totals(self, *, with_open: bool = False) -> dict[str, Acc]:
        """Sums per phase and ``other``, restored totals included; ``with_open`` adds the open
        windows' sums so far (for a checkpoint taken mid-window)."""
        out: dict[str, Acc] = {}
        restored = self.restored["totals"] if self.restored else {}
        for key in (*PHASES, "other"):
            found = [restored.get(key), self.other if key == "other" else self._totals.get(key)]
            if with_open:
                for w in self._stack:
                    w.settle()
                found += [w.acc for w in self._stack if w.phase == key]
            parts: list[Acc] = [p for p in found if p is not None]
            if parts or key == "other":
                out[key] = Acc()
                for p in parts:
                    out[key].add(p)
        return out

    def idle_baseline(self, before: Acc) -> dict[str, Any]:
        """Idle watts per domain from ``other``'s growth since ``before`` (an idle wait);
        stored in the record context so records get ``active_joules``."""
        s = self.other.seconds - before.seconds
        ctx = self.ctx
        faulted = self.other.unknown - before.unknown
        for d, period in ctx.periods.items():
            j = self.other.joules.get(d)
            j = None if j is None or d in faulted else j - before.joules.get(d, 0.0)
            ctx.idle_w[d] = None if j is None or s <= 0 or (j == 0.0 and s < period) else j / s
        ctx.idle_measured = True
        known = [w for w in ctx.idle_w.values() if w is not None]
        return {"seconds": s, "watts": sum(known) if known else None,
                "watts_by_domain": dict(ctx.idle_w)}

    def epochs_completed(self) -> int:
        """Complete epochs, those before a restored checkpoint included."""
        return self.epochs_done + (self.restored["epochs"] if self.restored else 0)

    def state_dict(self) -> dict[str, Any]:
        """Totals, complete epochs and the open epoch's partial sums (after a feed)."""
        open_epoch = None
        if self._resume is not None and not self.epoch_open:  # restored, not yet continued
            epoch, partial = self._resume
            open_epoch = {"epoch": epoch, "phases": {p: a.state() for p, a in partial.items()}}
        elif self.epoch_open:
            phases = {p: a.copy() for p, a in self._epoch_accs.items()}
            for w in self._stack:
                w.settle()
                phases.setdefault(w.phase, Acc()).add(w.acc)
            epoch = self._epoch_num if self._epoch_num is not None else self._stack[-1].epoch
            open_epoch = {"epoch": epoch, "phases": {p: a.state() for p, a in phases.items()}}
        return {
            "version": STATE_VERSION,
            "epochs": self.epochs_completed(),
            "totals": {k: a.state() for k, a in self.totals(with_open=True).items()},
            "open_epoch": open_epoch,
        }
