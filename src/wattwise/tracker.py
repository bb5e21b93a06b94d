"""Framework-neutral energy accounting: windows, phases, epochs, joules per datum, run summary.

Call sequence an adapter makes::

    tracker = EnergyTracker(meters="auto", summary_path="runs/x.json")   # validates only
    tracker.start(hardware=..., metadata=...)           # opens meters, idle baseline, writes summary
    for epoch in ...:
        tracker.start_window("train", epoch)            # reads meters once
        for batch in ...:
            tracker.add_batch(samples=len(batch))      # no meter read, just counts
            step = tracker.step_reading()              # only when step-level logging is on
        rec = tracker.end_window()                      # reads meters once -> PhaseRecord
        tracker.start_window("validate", epoch); ...; tracker.end_window()
        epoch_rec = tracker.end_epoch()                 # -> EpochRecord, summary rewritten
    tracker.finish("completed")                         # closes meters, final summary

Accounting is exact: every meter reading splits the counters' movement (and the elapsed
time) since the previous reading to exactly one place - the innermost open window, or
``other`` (time outside any window: before, between and after windows, the idle baseline).
So the windows of all phases plus ``other`` add up to the counters' movement from
:meth:`EnergyTracker.start` to :meth:`EnergyTracker.finish`. Windows nest: a ``validate``
window started while a ``train`` window is open pauses the train window (Lightning validates
inside the training epoch) and each gets only its own joules and seconds.

The tracker is not thread-safe: drive it from one thread (the training loop).
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import platform
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from os import PathLike
from typing import Any, Literal

from wattwise.errors import (
    ConfigurationError,
    EstimateWarning,
    MeterUnavailableError,
    MeterWarning,
    WattwiseError,
    WattwiseWarning,
)
from wattwise.meters.base import Meter

__all__ = [
    "METER_NAMES",
    "PHASES",
    "EnergyTracker",
    "EpochRecord",
    "Phase",
    "PhaseRecord",
    "RunStatus",
    "StepRecord",
]

Phase = Literal["train", "validate", "test", "predict"]
PHASES: tuple[str, ...] = ("train", "validate", "test", "predict")
RunStatus = Literal["running", "completed", "interrupted", "failed"]
METER_NAMES: tuple[str, ...] = ("nvml", "rapl", "pyrapl", "codecarbon")
_STATUSES = ("running", "completed", "interrupted", "failed")
_J_PER_KWH = 3.6e6
_monotonic = time.monotonic


@dataclass(frozen=True)
class PhaseRecord:
    """Energy of one phase window (or of several windows of the same phase in one epoch, summed).

    Unknown values are ``None``, never 0. ``joules`` is None when the window was shorter than a
    meter's update period and its counters did not move. ``joules`` sums the domains that are
    known; ``joules_by_domain`` shows which are not (a meter dropped mid-run, a stalled counter).
    Totals use ``epoch = -1`` and phase ``"other"`` for time outside any window, ``"run"``
    for the whole run.
    """

    phase: str
    epoch: int
    joules: float | None
    joules_by_domain: Mapping[str, float | None]
    seconds: float
    samples: int
    batches: int
    estimated: bool
    joules_per_sample: float | None
    joules_per_batch: float | None
    watts: float | None
    active_joules: float | None = None  # joules minus idle baseline power x seconds, if measured
    co2_g: float | None = None  # grams CO2eq, if a carbon intensity is known

    @classmethod
    def from_sums(
        cls,
        phase: str,
        epoch: int,
        *,
        joules: float | None,
        joules_by_domain: Mapping[str, float | None],
        seconds: float,
        samples: int,
        batches: int,
        estimated: bool,
        active_joules: float | None = None,
        co2_g: float | None = None,
    ) -> PhaseRecord:
        """A record from summed quantities, with the ratios derived (None where undefined):
        J/sample = joules / samples, J/batch = joules / batches, W = joules / seconds. Used by
        the tracker and by adapters that sum records across processes."""

        def per(denominator: float) -> float | None:
            return joules / denominator if joules is not None and denominator > 0 else None

        return cls(
            phase=phase,
            epoch=epoch,
            joules=joules,
            joules_by_domain=joules_by_domain,
            seconds=seconds,
            samples=samples,
            batches=batches,
            estimated=estimated,
            joules_per_sample=per(samples),
            joules_per_batch=per(batches),
            watts=per(seconds),
            active_joules=active_joules,
            co2_g=co2_g,
        )

    def metrics(self) -> dict[str, float]:
        """Flat quantity -> value dict for loggers, with None values left out.

        Keys: ``joules``, ``joules_per_sample``, ``joules_per_batch``, ``watts``, ``seconds``,
        ``samples``, ``active_joules``, ``co2_g`` and ``joules/<domain>`` per domain (e.g.
        ``joules/gpu:0``). Adapters add their prefix (``energy/train_`` or ``energy_``) and
        label estimates (``estimated`` is True) as such in the name.
        """
        out: dict[str, float] = {}
        for key in (
            "joules",
            "joules_per_sample",
            "joules_per_batch",
            "watts",
            "seconds",
            "samples",
            "active_joules",
            "co2_g",
        ):
            value = getattr(self, key)
            if value is not None:
                out[key] = float(value)
        for domain, joules in self.joules_by_domain.items():
            if joules is not None:
                out[f"joules/{domain}"] = float(joules)
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON form (as in the run summary)."""
        d = dict(self.__dict__)
        d["joules_by_domain"] = dict(self.joules_by_domain)
        return d


@dataclass(frozen=True)
class StepRecord:
    """A step-level window: at least ``min_window_s`` long, spanning one or more batches."""

    phase: str
    epoch: int
    step: int  # global batch index (per phase, 0-based) of the last batch in the window
    joules: float | None
    seconds: float
    samples: int
    batches: int
    estimated: bool
    joules_per_sample: float | None
    watts: float | None


@dataclass(frozen=True)
class EpochRecord:
    """All phase records of one epoch; ``joules`` None when no phase's joules are known."""

    epoch: int
    phases: Mapping[str, PhaseRecord]
    joules: float | None
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON form (as in the run summary)."""
        return {
            "epoch": self.epoch,
            "joules": self.joules,
            "seconds": self.seconds,
            "phases": {p: r.to_dict() for p, r in self.phases.items()},
        }


class _Acc:
    """Running sums of one window / phase: joules per observed domain, seconds, counts."""

    __slots__ = ("batches", "joules", "samples", "seconds")

    def __init__(self) -> None:
        self.joules: dict[str, float] = {}  # a domain is present once a delta was observed
        self.seconds = 0.0
        self.samples = 0
        self.batches = 0

    def add(self, other: _Acc) -> None:
        for d, j in other.joules.items():
            self.joules[d] = self.joules.get(d, 0.0) + j
        self.seconds += other.seconds
        self.samples += other.samples
        self.batches += other.batches

    def state(self) -> dict[str, Any]:
        return {
            "joules": dict(self.joules),
            "seconds": self.seconds,
            "samples": self.samples,
            "batches": self.batches,
        }

    @classmethod
    def from_state(cls, s: Mapping[str, Any]) -> _Acc:
        acc = cls()
        acc.joules = {str(d): float(j) for d, j in s["joules"].items()}
        acc.seconds, acc.samples, acc.batches = (
            float(s["seconds"]),
            int(s["samples"]),
            int(s["batches"]),
        )
        return acc


class _Window:
    __slots__ = ("acc", "epoch", "phase")

    def __init__(self, phase: str, epoch: int) -> None:
        self.phase, self.epoch, self.acc = phase, epoch, _Acc()


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _atexit_finish(ref: weakref.ReferenceType[EnergyTracker]) -> None:
    tracker = ref()
    if tracker is not None and tracker._status == "running":
        try:
            tracker.finish("interrupted")
        except Exception:  # noqa: BLE001, S110 - interpreter is exiting; never raise here
            pass


def _check_seconds(name: str, value: object, *, positive: bool = False) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):  # type: ignore[operator]
        bound = "> 0" if positive else ">= 0"
        raise ConfigurationError(
            f"EnergyTracker({name}={value!r}): expected a finite number of seconds {bound}"
        )
    return float(value)  # type: ignore[arg-type]


class EnergyTracker:
    """Turns meter readings into joules per phase, epoch and sample. Framework-neutral.

    Args:
        meters: ``"auto"``, a list of meter names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
            ``"codecarbon"``) or :class:`~wattwise.meters.Meter` instances (mixing allowed).
            When any meter in use is a real counter, estimating meters are kept out of the
            measured joules (their run total is reported separately in the summary).
        min_window_s: shortest step-level window, in seconds (default 1.0).
        summary_path: where the run summary JSON goes; None writes none.
        idle_baseline_s: seconds of idle power to measure in :meth:`start` (0 = off).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for CO2 figures; or
        country_iso_code: ISO 3166 alpha-3 code looked up in codecarbon's offline data.
        node_meters: False on every process but one per node, so node-wide counters
            (RAPL, codecarbon) are not counted once per rank.
        gpu_devices: CUDA logical device indices this process uses (for NVML), None = all visible.
        run_name: a name for the run summary.
    Raises:
        ConfigurationError: on any bad argument, naming it and the value.

    Example:
        >>> from wattwise import EnergyTracker
        >>> from wattwise.testing import FakeMeter
        >>> meter = FakeMeter(("gpu:0",))
        >>> tracker = EnergyTracker([meter], idle_baseline_s=0)
        >>> tracker.start()
        >>> tracker.start_window("train", epoch=0)
        >>> tracker.add_batch(samples=32)
        >>> meter.advance(64.0)
        >>> record = tracker.end_window()
        >>> record.joules, record.joules_per_sample
        (64.0, 2.0)
        >>> _ = tracker.end_epoch()
        >>> tracker.finish()["status"]
        'completed'
    """

    def __init__(
        self,
        meters: str | Sequence[str | Meter] = "auto",
        *,
        min_window_s: float = 1.0,
        summary_path: str | PathLike[str] | None = None,
        idle_baseline_s: float = 0.0,
        carbon_intensity_g_per_kwh: float | None = None,
        country_iso_code: str | None = None,
        node_meters: bool = True,
        gpu_devices: Sequence[int] | None = None,
        run_name: str | None = None,
    ) -> None:
        self._names: list[str] | str
        self._instances: list[Meter] = []
        if isinstance(meters, str):
            if meters != "auto" and meters not in METER_NAMES:
                raise ConfigurationError(
                    f"EnergyTracker(meters={meters!r}): expected 'auto', a list of names from "
                    f"{METER_NAMES!r}, or Meter instances"
                )
            self._names = meters if meters == "auto" else [meters]
        elif isinstance(meters, Sequence) and len(meters) > 0:
            self._names = []
            for m in meters:
                if isinstance(m, Meter):
                    if any(m is x for x in self._instances):
                        raise ConfigurationError(
                            f"EnergyTracker(meters=...): meter {m!r} is given twice"
                        )
                    self._instances.append(m)
                elif isinstance(m, str) and m in METER_NAMES and m not in self._names:
                    self._names.append(m)
                else:
                    raise ConfigurationError(
                        f"EnergyTracker(meters=...): entry {m!r} is not a Meter instance nor "
                        f"a distinct meter name from {METER_NAMES!r}"
                    )
        else:
            raise ConfigurationError(
                f"EnergyTracker(meters={meters!r}): expected 'auto', a non-empty list of meter "
                f"names from {METER_NAMES!r}, or Meter instances"
            )
        self._min_window_s = _check_seconds("min_window_s", min_window_s)
        self._idle_baseline_s = _check_seconds("idle_baseline_s", idle_baseline_s)
        if carbon_intensity_g_per_kwh is not None and country_iso_code is not None:
            raise ConfigurationError(
                f"EnergyTracker(carbon_intensity_g_per_kwh={carbon_intensity_g_per_kwh!r}, "
                f"country_iso_code={country_iso_code!r}): give one of them, not both"
            )
        if carbon_intensity_g_per_kwh is not None:
            c = carbon_intensity_g_per_kwh
            if (
                isinstance(c, bool)
                or not isinstance(c, (int, float))
                or not math.isfinite(c)
                or c < 0
            ):
                raise ConfigurationError(
                    f"EnergyTracker(carbon_intensity_g_per_kwh={c!r}): expected a finite number "
                    "of grams CO2eq per kWh >= 0 (e.g. 400.0)"
                )
        if country_iso_code is not None and not (
            isinstance(country_iso_code, str)
            and len(country_iso_code) == 3
            and country_iso_code.isascii()
            and country_iso_code.isalpha()
        ):
            raise ConfigurationError(
                f"EnergyTracker(country_iso_code={country_iso_code!r}): expected an ISO 3166 "
                "alpha-3 code such as 'FRA' or 'USA'"
            )
        if not isinstance(node_meters, bool):
            raise ConfigurationError(f"EnergyTracker(node_meters={node_meters!r}): expected a bool")
        if gpu_devices is not None and (
            isinstance(gpu_devices, (str, bytes))
            or not isinstance(gpu_devices, Sequence)
            or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in gpu_devices
            )
        ):
            raise ConfigurationError(
                f"EnergyTracker(gpu_devices={gpu_devices!r}): expected None or a list of CUDA "
                "device indices >= 0 such as [0, 1]"
            )
        if run_name is not None and not isinstance(run_name, str):
            raise ConfigurationError(
                f"EnergyTracker(run_name={run_name!r}): expected a str or None"
            )
        self._summary_path = os.fspath(summary_path) if summary_path is not None else None
        self._carbon = (
            None if carbon_intensity_g_per_kwh is None else float(carbon_intensity_g_per_kwh)
        )
        self._country = country_iso_code.upper() if country_iso_code else None
        self._node_meters = node_meters
        self._gpu_devices = list(gpu_devices) if gpu_devices is not None else None
        self._run_name = run_name
        # runtime state (set in start)
        self._status: str = "created"
        self._error: str | None = None
        self._active: list[Meter] = []  # measured meters still read
        self._excluded: list[Meter] = []  # estimating meters kept out of measured joules
        self._meter_info: list[dict[str, Any]] = []
        self._info_by_meter: dict[int, dict[str, Any]] = {}
        self._unavailable: dict[str, str] = {}
        self._domain_meter: dict[str, Meter] = {}
        self._approx: set[str] = set()  # domains read as power x time (no energy counter)
        self._prev: dict[str, float] = {}
        self._prev_t = 0.0
        self._estimate_mode = False
        self._stack: list[_Window] = []
        self._step = _Acc()
        self._step_t = 0.0
        self._step_base = (0, 0)
        self._step_index: dict[str, int] = {}
        self._other = _Acc()
        self._totals: dict[str, _Acc] = {}
        self._epoch_accs: dict[str, _Acc] = {}
        self._epoch_num: int | None = None
        self._epochs: list[dict[str, Any]] = []
        self._epochs_done = 0
        self._restored: dict[str, Any] | None = None
        self._idle: dict[str, Any] | None = None
        self._idle_w: dict[str, float | None] = {}
        self._carbon_source: str | None = None if self._carbon is None else "argument"
        self._excluded_first: dict[str, float] = {}
        self._excluded_joules: dict[str, float] | None = None
        self._hardware: dict[str, Any] = {}
        self._metadata: dict[str, Any] = {}
        self._advice: dict[str, Any] | None = None
        self._started_at: str | None = None
        self._finished_at: str | None = None
        self._t0 = 0.0
        self._summary_file: Any = None  # wattwise.summary.SummaryFile, opened by start()
        self._epoch_json: list[str] = []  # each finished epoch record, serialised once
        self._write_warned = False
        self._final: dict[str, Any] | None = None
        self._atexit: Any = None

    # lifecycle -----------------------------------------------------------------------------
    def start(
        self,
        *,
        hardware: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Open meters, measure the idle baseline, take the first reading, write the summary.

        Args:
            hardware: facts about the machine to record (GPU model, ...); platform and CPU
                basics are added.
            metadata: anything JSON-serialisable about the run (model, dataset, batch size).

        Raises:
            ConfigurationError: when a country code is given and codecarbon is not installed,
                or two meters report the same domain name.
            MeterUnavailableError: when a meter asked for by name cannot open.
        """
        if self._status != "created":
            raise WattwiseError(f"EnergyTracker.start(): already called (status {self._status!r})")
        if self._country is not None:
            try:
                from wattwise.meters.codecarbon import carbon_intensity_g_per_kwh
            except ImportError as e:
                raise ConfigurationError(
                    f"EnergyTracker(country_iso_code={self._country!r}) needs codecarbon's "
                    f"offline data ({e}); install it with `pip install 'wattwise[codecarbon]'` "
                    "or pass carbon_intensity_g_per_kwh=<g per kWh> instead"
                ) from e
            try:
                self._carbon = float(carbon_intensity_g_per_kwh(self._country))
            except MeterUnavailableError as e:
                raise ConfigurationError(
                    f"EnergyTracker(country_iso_code={self._country!r}): {e}; install codecarbon "
                    "(`pip install 'wattwise[codecarbon]'`) or pass carbon_intensity_g_per_kwh="
                ) from e
            self._carbon_source = f"codecarbon offline data for {self._country}"
        meters = list(self._instances)
        if self._names:
            from wattwise.meters.factory import open_meters

            opened, unavailable = open_meters(
                self._names, node_meters=self._node_meters, gpu_devices=self._gpu_devices
            )
            meters += list(opened)
            self._unavailable.update(unavailable)
        self._estimate_mode = bool(meters) and all(m.estimated for m in meters)
        seen: dict[str, Meter] = {}
        for m in meters:
            for d in m.domains:
                if d in seen:
                    for opened_meter in meters[len(self._instances) :]:  # ours to close
                        self._close(opened_meter)
                    raise ConfigurationError(
                        f"EnergyTracker(meters=...): meters {seen[d]!r} and {m!r} both report "
                        f"domain {d!r}; give each meter distinct domain names"
                    )
                seen[d] = m
            used = m.estimated and not self._estimate_mode
            (self._excluded if used else self._active).append(m)
            info = dict(m.describe())
            info["use"] = "excluded" if used else ("estimated" if m.estimated else "measured")
            info["dropped"] = None
            self._meter_info.append(info)
            self._info_by_meter[id(m)] = info
        if not meters:
            warnings.warn(
                "EnergyTracker: no meter could be opened; energy values will be None "
                f"(unavailable: {self._unavailable!r})",
                MeterWarning,
                stacklevel=2,
            )
        elif self._estimate_mode and self._names != "auto":
            # ("auto" has already said so in open_meters' one warning, with the reasons)
            warnings.warn(
                "EnergyTracker: no hardware counter is readable; joules are ESTIMATES "
                f"from {[m.name for m in meters]!r}",
                EstimateWarning,
                stacklevel=2,
            )
        self._hardware = {
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            **dict(hardware or {}),
        }
        self._metadata = dict(metadata or {})
        self._started_at = _now_iso()
        self._status = "running"
        for m in self._excluded:
            r = self._safe_read(m)
            if r is not None:
                self._excluded_first.update(r.joules)
        for m in tuple(self._active):
            r = self._safe_read(m)
            if r is not None:
                for d, j in r.joules.items():
                    self._prev[d] = float(j)
                    self._domain_meter[d] = m
        self._t0 = self._prev_t = self._step_t = _monotonic()
        if self._idle_baseline_s > 0:
            self._measure_idle()
        self._atexit = functools.partial(_atexit_finish, weakref.ref(self))
        atexit.register(self._atexit)
        if self._summary_path is not None:
            from wattwise.summary import SummaryFile

            self._summary_file = SummaryFile(self._summary_path)
        self._write(now=True)

    def _measure_idle(self) -> None:
        before = self._other.state()
        time.sleep(self._idle_baseline_s)
        self._take_reading()
        s = self._other.seconds - before["seconds"]
        self._idle_w = {}
        for d in self._domain_meter:
            j = self._other.joules.get(d, 0.0) - before["joules"].get(d, 0.0)
            unknown = d not in self._other.joules or (
                j == 0.0 and s < self._domain_meter[d].update_period_s
            )
            self._idle_w[d] = None if unknown or s <= 0 else j / s
        known = [w for w in self._idle_w.values() if w is not None]
        self._idle = {
            "seconds": s,
            "watts": sum(known) if known else None,
            "watts_by_domain": dict(self._idle_w),
        }

    def _require_running(self, what: str) -> None:
        if self._status != "running":
            raise WattwiseError(
                f"EnergyTracker.{what}: the tracker is {self._status!r}; call start() first "
                "(and not after finish())"
            )

    def start_window(self, phase: str, epoch: int) -> None:
        """Begin a window of ``phase`` in ``epoch`` (one meter read).

        A window opened while another is open pauses the outer one until this one ends.
        """
        if phase not in PHASES:
            raise ConfigurationError(
                f"EnergyTracker.start_window(phase={phase!r}): expected one of {PHASES!r}"
            )
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigurationError(
                f"EnergyTracker.start_window(epoch={epoch!r}): expected an int >= 0"
            )
        self._require_running("start_window()")
        self._take_reading()
        self._stack.append(_Window(phase, epoch))
        self._reset_step()

    def add_batch(self, samples: int, batches: int = 1) -> None:
        """Count ``batches`` batches (default one) holding ``samples`` samples in all, in the
        open window. No meter read.

        Adapters on a per-batch hot path may count locally and hand over the sums before each
        reading (``add_batch(sum_samples, batches=k)``): the result is the same.
        """
        if not self._stack:
            raise WattwiseError(
                "EnergyTracker.add_batch(): no window is open; call "
                "start_window(phase, epoch) first"
            )
        if samples < 0 or batches < 0:
            raise ConfigurationError(
                f"EnergyTracker.add_batch(samples={samples!r}, batches={batches!r}): "
                "expected both >= 0"
            )
        acc = self._stack[-1].acc
        acc.samples += samples
        acc.batches += batches

    def step_reading(self) -> StepRecord | None:
        """Step-level window: returns a record once ``min_window_s`` has passed since the last
        one (reads meters only when the clock says so), else None."""
        if _monotonic() - self._step_t < self._min_window_s or not self._stack:
            return None
        t0 = self._step_t
        self._take_reading()
        w = self._stack[-1]
        seconds = self._prev_t - t0
        joules = self._known_sum(self._step.joules, seconds)
        samples, batches = w.acc.samples - self._step_base[0], w.acc.batches - self._step_base[1]
        rec = StepRecord(
            phase=w.phase,
            epoch=w.epoch,
            step=self._step_index.get(w.phase, 0) + w.acc.batches - 1,
            joules=joules,
            seconds=seconds,
            samples=samples,
            batches=batches,
            estimated=self._estimate_mode,
            joules_per_sample=joules / samples if joules is not None and samples else None,
            watts=joules / seconds if joules is not None and seconds > 0 else None,
        )
        self._reset_step()
        return rec

    def end_window(self) -> PhaseRecord:
        """Close the open window (one meter read) and return its record."""
        if not self._stack:
            raise WattwiseError(
                "EnergyTracker.end_window(): no window is open; call "
                "start_window(phase, epoch) first"
            )
        self._take_reading()
        w = self._stack.pop()
        self._step_index[w.phase] = self._step_index.get(w.phase, 0) + w.acc.batches
        self._epoch_accs.setdefault(w.phase, _Acc()).add(w.acc)
        self._totals.setdefault(w.phase, _Acc()).add(w.acc)
        self._epoch_num = w.epoch
        self._reset_step()
        return self._record(w.phase, w.epoch, w.acc)

    def end_epoch(self) -> EpochRecord:
        """Close the epoch, add it to the summary and rewrite the summary file atomically.

        Open windows are closed first. Several windows of one phase are summed. The summary
        file is rewritten by a background thread (see :class:`wattwise.summary.SummaryFile`),
        so the training thread never waits on the disk; :meth:`flush` waits for it.
        """
        self._require_running("end_epoch()")
        rec = self._close_epoch()
        self._write()
        return rec

    def _close_epoch(self) -> EpochRecord:
        while self._stack:
            self.end_window()
        epoch = self._epoch_num if self._epoch_num is not None else self._epochs_done
        phases = {p: self._record(p, epoch, acc) for p, acc in self._epoch_accs.items()}
        known = [r.joules for r in phases.values() if r.joules is not None]
        rec = EpochRecord(
            epoch=epoch,
            phases=phases,
            joules=sum(known) if known else None,
            seconds=sum(r.seconds for r in phases.values()),
        )
        record = rec.to_dict()
        self._epochs.append(record)
        if self._summary_file is not None:
            from wattwise.summary import epoch_json

            try:
                self._epoch_json.append(epoch_json(record))
            except (TypeError, ValueError) as e:  # never: records hold floats, ints, None
                self._epoch_json.append("null")
                self._warn_write(e)
        self._epochs_done += 1
        self._epoch_accs = {}
        self._epoch_num = None
        return rec

    def finish(
        self, status: RunStatus = "completed", error: BaseException | None = None
    ) -> dict[str, Any]:
        """Close any open window and the meters, write the final summary; returns it as a dict.

        Idempotent: a second call returns the same summary without reading again. Never
        raises because of a meter (an adapter calls it on the failure path).
        """
        if self._final is not None:
            return self._final
        if status not in _STATUSES[1:]:
            raise ConfigurationError(
                f"EnergyTracker.finish(status={status!r}): expected one of {_STATUSES[1:]!r}"
            )
        if self._status == "running":
            if self._stack or self._epoch_accs:
                self._close_epoch()
            self._take_reading()
            for m in self._excluded:
                r = self._safe_read(m)
                if r is not None:
                    self._excluded_joules = {
                        d: float(j) - self._excluded_first[d]
                        for d, j in r.joules.items()
                        if d in self._excluded_first
                    }
            for m in self._active + self._excluded:
                self._close(m)
        if self._atexit is not None:
            atexit.unregister(self._atexit)
        self._status = status
        self._error = None if error is None else f"{type(error).__name__}: {error}"
        self._finished_at = _now_iso()
        self._final = self.summary()
        self._write(now=True)
        if self._summary_file is not None:
            self._summary_file.close()
        return self._final

    # internals -----------------------------------------------------------------------------
    def _safe_read(self, meter: Meter) -> Any:
        try:
            return meter.read()
        except Exception as e:  # noqa: BLE001 - a failing meter never kills training
            self._drop(meter, f"read failed: {type(e).__name__}: {e}")
            return None

    def _take_reading(self) -> None:
        """Read every active meter; give the deltas and the elapsed time to the innermost
        open window, or to ``other``."""
        acc = self._stack[-1].acc if self._stack else self._other
        step = self._step.joules
        prev = self._prev
        for m in tuple(self._active):
            r = self._safe_read(m)
            if r is None:
                continue
            if r.approximate_domains:
                self._approx.update(r.approximate_domains)
            deltas: list[tuple[str, float, float]] = []
            for d, j in r.joules.items():
                p = prev.get(d)
                if p is None:  # first time we see this domain: baseline only
                    prev[d] = float(j)
                    self._domain_meter.setdefault(d, m)
                    continue
                delta = j - p
                if delta < -1e-9 * max(1.0, abs(p)):
                    self._drop(m, f"counter {d!r} went backwards by {-delta:.6g} J")
                    deltas = []
                    break
                deltas.append((d, float(j), delta))
            for d, j, delta in deltas:
                prev[d] = j
                acc.joules[d] = acc.joules.get(d, 0.0) + delta
                step[d] = step.get(d, 0.0) + delta
        t = _monotonic()
        acc.seconds += t - self._prev_t
        self._prev_t = t

    def _drop(self, meter: Meter, reason: str) -> None:
        if meter in self._active:
            self._active.remove(meter)
        elif meter in self._excluded:
            self._excluded.remove(meter)
        info = self._info_by_meter.get(id(meter))
        if info is not None:
            info["dropped"] = {
                "reason": reason,
                "epoch": self._epoch_num,
                "after_s": _monotonic() - self._t0 if self._t0 else 0.0,
            }
        warnings.warn(
            f"EnergyTracker: meter {meter.name!r} (domains {list(meter.domains)!r}) dropped: "
            f"{reason}; energy it measured so far is kept, its domains are None from now on",
            MeterWarning,
            stacklevel=3,
        )
        self._close(meter)

    @staticmethod
    def _close(meter: Meter) -> None:
        try:
            meter.close()
        except Exception:  # noqa: BLE001, S110 - closing a failed meter is best effort
            pass

    def _reset_step(self) -> None:
        self._step = _Acc()
        self._step_t = self._prev_t
        acc = self._stack[-1].acc if self._stack else None
        self._step_base = (acc.samples, acc.batches) if acc else (0, 0)

    def _domain_joules(
        self, joules: Mapping[str, float], seconds: float
    ) -> dict[str, float | None]:
        """Per domain joules, None for never-observed domains and for counters that did not
        move in a window shorter than their update period."""
        out: dict[str, float | None] = {}
        for d, m in self._domain_meter.items():
            j = joules.get(d)
            out[d] = None if j is None or (j == 0.0 and seconds < m.update_period_s) else j
        return out

    def _known_sum(self, joules: Mapping[str, float], seconds: float) -> float | None:
        known = [j for j in self._domain_joules(joules, seconds).values() if j is not None]
        return sum(known) if known else None

    def _record(self, phase: str, epoch: int, acc: _Acc) -> PhaseRecord:
        by_domain = self._domain_joules(acc.joules, acc.seconds)
        known = {d: j for d, j in by_domain.items() if j is not None}
        joules = sum(known.values()) if known else None
        active = None
        if joules is not None and self._idle is not None:
            idle = [w for d in known if (w := self._idle_w.get(d)) is not None]
            if len(idle) == len(known):
                active = joules - sum(idle) * acc.seconds
        return PhaseRecord.from_sums(
            phase,
            epoch,
            joules=joules,
            joules_by_domain=by_domain,
            seconds=acc.seconds,
            samples=acc.samples,
            batches=acc.batches,
            estimated=self._estimate_mode,
            active_joules=active,
            co2_g=joules * self._carbon / _J_PER_KWH
            if joules is not None and self._carbon is not None
            else None,
        )

    def _write(self, *, now: bool = False) -> None:
        """Rewrite the summary file: on this thread when ``now`` (start, finish), else by the
        background writer. A failure warns once; training continues."""
        f = self._summary_file
        if f is None:
            return
        if f.error is not None:
            self._warn_write(f.error)
        head = self._final if self._final is not None else self._summary_dict(epochs=None)
        n = len(self._epoch_json)
        if not now:
            f.submit(head, self._epoch_json, n)
            return
        try:
            f.write_now(head, self._epoch_json, n)
        except (OSError, ValueError, TypeError) as e:
            self._warn_write(e)

    def _warn_write(self, e: BaseException) -> None:
        if not self._write_warned:
            self._write_warned = True
            warnings.warn(
                f"EnergyTracker(summary_path={self._summary_path!r}): cannot write "
                f"the run summary ({type(e).__name__}: {e}); training continues",
                WattwiseWarning,
                stacklevel=4,
            )

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until the summary file holds every finished epoch (the background writer has
        caught up); returns False if ``timeout_s`` seconds ran out first."""
        return True if self._summary_file is None else bool(self._summary_file.flush(timeout_s))

    # queries -------------------------------------------------------------------------------
    @property
    def estimated(self) -> bool:
        """True when the joules come from estimates (no hardware counter is in use)."""
        return self._estimate_mode

    @property
    def meters(self) -> tuple[Meter, ...]:
        """The meters in use (after :meth:`start`; failed ones dropped)."""
        return tuple(self._active)

    @property
    def status(self) -> str:
        """``"created"`` before :meth:`start`, then ``"running"``, then the finish status."""
        return self._status

    def _restored_acc(self, key: str) -> _Acc:
        acc = _Acc()
        if self._restored is not None and key in self._restored["totals"]:
            acc.add(_Acc.from_state(self._restored["totals"][key]))
        return acc

    def totals(self) -> dict[str, PhaseRecord]:
        """Run totals per phase (epoch = -1), including restored checkpoint totals, plus
        ``"other"`` (time outside any window, including the idle baseline)."""
        keys = [
            p
            for p in PHASES
            if p in self._totals or (self._restored is not None and p in self._restored["totals"])
        ]
        out = {}
        for key in (*keys, "other"):
            acc = self._restored_acc(key)
            acc.add(
                self._other
                if key == "other"
                else self._totals[key]
                if key in self._totals
                else _Acc()
            )
            out[key] = self._record(key, -1, acc)
        return out

    def run_total(self) -> PhaseRecord:
        """The whole run (all phases and ``other``) as one record, phase ``"run"``, epoch -1."""
        acc = self._restored_acc("other")
        acc.add(self._other)
        for p in PHASES:
            acc.add(self._restored_acc(p))
            if p in self._totals:
                acc.add(self._totals[p])
        acc.samples = acc.batches = (
            0  # samples belong to phases; a run total per sample is meaningless
        )
        return self._record("run", -1, acc)

    def summary(self) -> dict[str, Any]:
        """The run summary as a JSON-serialisable dict (schema in docs/summary-schema.md)."""
        return self._summary_dict(epochs=list(self._epochs))

    def _summary_dict(self, epochs: list[dict[str, Any]] | None) -> dict[str, Any]:
        from wattwise import __version__
        from wattwise.summary import SCHEMA_VERSION

        totals = self.totals()
        other = totals.pop("other")
        approx = sorted(
            self._approx | {d for m in self._meter_info for d in m.get("approximate_domains", [])}
        )
        return {
            "schema_version": SCHEMA_VERSION,
            "wattwise_version": __version__,
            "run_name": self._run_name,
            "status": self._status,
            "error": self._error,
            "started_at": self._started_at,
            "finished_at": self._finished_at,
            "duration_s": (self._prev_t - self._t0) if self._t0 else 0.0,
            "estimated": self._estimate_mode,
            "meters": [dict(m) for m in self._meter_info],
            "unavailable_meters": dict(self._unavailable),
            "approximate_domains": approx,
            "excluded_estimates": None
            if not self._excluded_first
            else {
                "joules_by_domain": self._excluded_joules,
                "note": "estimates kept out of the measured joules because a hardware counter "
                "was in use; joules_by_domain is null until finish()",
            },
            "hardware": self._hardware,
            "metadata": self._metadata,
            "config": {
                "min_window_s": self._min_window_s,
                "node_meters": self._node_meters,
                "gpu_devices": self._gpu_devices,
            },
            "idle_baseline": self._idle,
            "carbon_intensity": None
            if self._carbon is None
            else {"g_per_kwh": self._carbon, "source": self._carbon_source},
            "resumed_from": None
            if self._restored is None
            else {"epochs": self._restored["epochs"]},
            "epochs_completed": self._epochs_done
            + (self._restored["epochs"] if self._restored else 0),
            "epochs": epochs,
            "totals": {
                "phases": {p: r.to_dict() for p, r in totals.items()},
                "other": other.to_dict(),
                "run": self.run_total().to_dict(),
            },
            "advice": self._advice,
        }

    def set_advice(self, advice: Mapping[str, Any]) -> None:
        """Store the sizing advice (JSON form) in the run summary."""
        if not isinstance(advice, Mapping):
            raise ConfigurationError(
                f"EnergyTracker.set_advice(advice={advice!r}): expected a mapping"
            )
        self._advice = dict(advice)
        if self._final is not None:
            self._final["advice"] = self._advice
            self._write(now=True)

    def state_dict(self) -> dict[str, Any]:
        """Cumulative totals for checkpoints (per phase and ``other``, plus the epoch count)."""
        keys = set(self._totals) | {"other"}
        if self._restored is not None:
            keys |= set(self._restored["totals"])
        totals = {}
        for k in sorted(keys):
            acc = self._restored_acc(k)
            acc.add(self._other if k == "other" else self._totals.get(k, _Acc()))
            totals[k] = acc.state()
        epochs = self._epochs_done + (self._restored["epochs"] if self._restored else 0)
        return {"version": 1, "epochs": epochs, "totals": totals}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore cumulative totals from :meth:`state_dict` (resuming from a checkpoint).

        Totals then include the energy before the checkpoint; a second call replaces the first.
        """
        try:
            if state["version"] != 1:
                raise ValueError(f"unknown version {state['version']!r}")
            restored = {
                "epochs": int(state["epochs"]),
                "totals": {str(k): _Acc.from_state(v).state() for k, v in state["totals"].items()},
            }
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ConfigurationError(
                f"EnergyTracker.load_state_dict(state={state!r}): not a state from "
                f"EnergyTracker.state_dict() ({type(e).__name__}: {e})"
            ) from e
        self._restored = restored
