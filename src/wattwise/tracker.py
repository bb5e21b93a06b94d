"""``EnergyTracker``: the one owner of run state, framework-neutral. Callbacks compose it.

Call sequence (a plain training loop; the callbacks make the same calls from their hooks)::

    tracker = EnergyTracker(meters="auto", summary_path="runs/x.json")   # validates only
    with tracker:                                       # start(): meters, first reading, summary
        for epoch in ...:
            tracker.start_window("train", epoch)        # reads meters once
            for batch in ...:
                tracker.add_batch(samples=len(batch))  # no meter read, just counts
            tracker.end_window()                        # reads meters once -> PhaseRecord
            tracker.end_epoch()                         # -> EpochRecord, summary rewritten
    # leaving the block: finish("completed"), or "failed"/"interrupted" on an exception

**Runs and stages.** A run is one summary file. It holds the stages (``fit``, ``validate``,
``test``, ``predict``) begun on this tracker, each with its own epochs: ``test`` after ``fit``
appends a stage. A ``fit`` begun when the run already has one starts a new run (its file gets
a ``.run2`` suffix instead of overwriting the first); only :meth:`load_state_dict` (a
checkpoint) carries totals over. Meters the tracker opened by name are opened for each stage
and closed at its end; meter instances the user passed are never closed.

**Failures.** With ``on_error="warn"`` (the callbacks), an error inside measurement becomes one
:class:`~wattwise.errors.MeterWarning`, measurement stops and what was measured is kept: the
tracker never stops a training run. A stage still running when an uncaught exception ends the
process is recorded as ``"failed"`` (``"interrupted"`` for KeyboardInterrupt) with the error;
one running at interpreter exit as ``"interrupted"``.

The accounting is in :mod:`wattwise.accounting`, the summary in :mod:`wattwise.summary`, the
meters in :mod:`wattwise.meterset`. Not thread-safe: drive it from the training thread.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from os import PathLike
from types import TracebackType
from typing import Any, Literal, TypeVar

from wattwise import _lifecycle
from wattwise._warn import warn
from wattwise.accounting import PHASES, Ledger, RecordContext, restore_state
from wattwise.config import RunContext, TrackerConfig
from wattwise.errors import (
    ConfigurationError,
    MeterUnavailableError,
    MeterWarning,
    WattwiseError,
    WattwiseWarning,
)
from wattwise.meters.base import Meter
from wattwise.meterset import MeterSet
from wattwise.records import EpochRecord, PhaseRecord, StepRecord
from wattwise.samples import count_samples
from wattwise.summary import RunSnapshot, StageSnapshot, SummaryFile, render, summary_file_path

__all__ = ["PHASES", "EnergyTracker", "RunStatus"]

RunStatus = Literal["running", "completed", "interrupted", "failed"]
_ENDED = ("completed", "interrupted", "failed")
_monotonic = time.monotonic
_F = TypeVar("_F", bound=Callable[..., Any])


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _guarded(what: str) -> Callable[[_F], _F]:
    """With ``on_error="warn"``: an exception becomes one warning and measurement stops."""

    def deco(fn: _F) -> _F:
        @functools.wraps(fn)
        def run(self: EnergyTracker, *args: Any, **kwargs: Any) -> Any:
            if self._broken:
                return None
            try:
                return fn(self, *args, **kwargs)
            except Exception as e:
                if self.config.on_error == "raise":
                    raise
                self._fail(what, e)
                return None

        return run  # type: ignore[return-value]

    return deco


class _Stage:
    def __init__(self, name: str, ledger: Ledger, meters: MeterSet) -> None:
        self.name, self.ledger, self.meters = name, ledger, meters
        self.status: str = "running"
        self.error: str | None = None
        self.started_at: str | None = _now_iso()
        self.finished_at: str | None = None


class _Run:
    def __init__(self, index: int, config: TrackerConfig, context: RunContext) -> None:
        self.index, self.config, self.context = index, config, context
        self.ctx = RecordContext(carbon_g_per_kwh=config.carbon_intensity_g_per_kwh)
        self.stages: list[_Stage] = []
        self.epochs: list[EpochRecord] = []
        self.head: dict[str, Any] = {}
        self.file: SummaryFile | None = None
        self.advice: dict[str, Any] | None = None
        self.advice_tried = False
        self.t0 = self.t = 0.0
        self.closed = False


class EnergyTracker:
    """Turns meter readings into joules per phase, epoch and sample. Framework-neutral.

    Args:
        meters: ``"auto"``, a list of meter names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
            ``"codecarbon"``) or :class:`~wattwise.meters.Meter` instances (mixing allowed).
            When any meter in use is a real counter, estimating meters are kept out of the
            measured joules (their run total is reported separately in the summary).
        min_window_s: shortest step-level window, in seconds (default 1.0).
        summary_path: where the run summary JSON goes; None writes none.
        idle_baseline_s: seconds of idle power to measure at the start of a run (0 = off).
        carbon_intensity_g_per_kwh: grams CO2eq per kWh for CO2 figures; or
        country_iso_code: ISO 3166 alpha-3 code looked up in codecarbon's offline data.
        node_meters: False on every process but one per node, so node-wide counters
            (RAPL, codecarbon, node-scope instances) are not counted once per rank.
        gpu_devices: CUDA logical device indices this process uses (for NVML), None = all visible.
        run_name: a name for the run summary.
        config: a ready :class:`~wattwise.config.TrackerConfig` instead of the arguments above.
    Raises:
        ConfigurationError: on any bad argument, naming it and the value.

    Example:
        >>> from wattwise import EnergyTracker
        >>> from wattwise.testing import FakeMeter
        >>> meter = FakeMeter(("gpu:0",))
        >>> tracker = EnergyTracker([meter], idle_baseline_s=0)
        >>> with tracker:
        ...     tracker.start_window("train", epoch=0)
        ...     _ = tracker.add_batch(samples=32)
        ...     meter.advance(64.0)
        ...     record = tracker.end_window()
        ...     _ = tracker.end_epoch()
        >>> record.joules, record.joules_per_sample, tracker.status
        (64.0, 2.0, 'completed')
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
        config: TrackerConfig | None = None,
    ) -> None:
        if config is None:
            config = TrackerConfig(
                meters=meters,  # type: ignore[arg-type]
                min_window_s=min_window_s, summary_path=summary_path,  # type: ignore[arg-type]
                idle_baseline_s=idle_baseline_s,
                carbon_intensity_g_per_kwh=carbon_intensity_g_per_kwh,
                country_iso_code=country_iso_code, node_meters=node_meters,
                gpu_devices=gpu_devices, run_name=run_name,  # type: ignore[arg-type]
            )
        elif not isinstance(config, TrackerConfig):
            raise ConfigurationError(f"EnergyTracker(config={config!r}): expected a TrackerConfig")
        self.config = config
        self._run: _Run | None = None
        self._ledger: Ledger | None = None  # the running stage's (the per-batch path reads it)
        self._broken = False
        self._restore: dict[str, Any] | None = None  # from load_state_dict, for the next fit
        self._warned: set[str] = set()
        self._steps = 0  # batches since the last step-level reading
        self._last_summary: dict[str, Any] | None = None

    # runs and stages -----------------------------------------------------------------------
    def start(self, *, hardware: Mapping[str, Any] | None = None,
              metadata: Mapping[str, Any] | None = None, stage: str = "fit",
              context: RunContext | None = None) -> None:
        """Begin a stage (a new run when needed): open meters, take the first reading, write
        the summary. See :meth:`begin_stage`; this one raises if a stage is already running."""
        if self._stage is not None:
            raise WattwiseError(f"EnergyTracker.start(): already called (status {self.status!r})")
        self.begin_stage(stage, hardware=hardware, metadata=metadata, context=context)

    def begin_stage(self, stage: str, *, hardware: Mapping[str, Any] | None = None,
                    metadata: Mapping[str, Any] | None = None,
                    context: RunContext | None = None) -> None:
        """Begin ``stage`` (``fit``/``validate``/``test``/``predict``) of the run, or of a new
        run: the first stage, a ``fit`` when the run already has one, or after :meth:`finish`.

        Args:
            hardware: facts about the machine for the summary (platform basics are added).
            metadata: anything JSON-serialisable about the run (model, dataset, batch size).
            context: this process's rank, GPU and log folder (a callback knows them).

        Raises:
            MeterUnavailableError: a meter asked for by name cannot open (always raised).
            ConfigurationError: a country code without codecarbon, two meters with one domain.
        """
        if stage not in ("fit", "validate", "test", "predict"):
            raise ConfigurationError(
                f"EnergyTracker.begin_stage(stage={stage!r}): expected 'fit', 'validate', "
                "'test' or 'predict'"
            )
        if self._stage is not None:
            self.end_stage("interrupted", WattwiseError(f"{stage!r} began before it ended"))
        self._broken = False
        run = self._run
        if run is None or run.closed or (stage == "fit" and any(s.name == "fit" for s in run.stages)):
            if run is not None and not run.closed:
                self._close_run()
            run = self._new_run(context or RunContext())
        try:
            self._open_stage(run, stage, hardware, metadata)
        except (MeterUnavailableError, ConfigurationError):
            raise
        except Exception as e:
            if self.config.on_error == "raise":
                raise
            self._fail("starting the energy measurement", e)

    def _new_run(self, context: RunContext) -> _Run:
        cfg = dataclasses.replace(
            self.config, node_meters=self.config.node_meters and context.local_rank == 0,
            gpu_devices=self.config.gpu_devices if context.gpu_devices is None else context.gpu_devices,
        )
        index = 0 if self._run is None else self._run.index + 1
        run = _Run(index, cfg, context)
        if cfg.country_iso_code is not None:
            run.ctx.carbon_g_per_kwh = _country_carbon(cfg.country_iso_code)
        path = cfg.summary_path
        if path == "auto":
            if context.log_dir is None:
                self._warn_once("auto", f"{cfg.owner}(summary_path='auto'): there is no log "
                                "folder (no logger), so no run summary is written; pass "
                                "summary_path='<file>.json' to write one", WattwiseWarning)
                path = None
            else:
                path = os.path.join(context.log_dir, "wattwise_summary.json")
        if path is not None:
            run.file = SummaryFile(summary_file_path(path, context.global_rank, index))
        self._run = run
        return run

    def _open_stage(self, run: _Run, name: str, hardware: Any, metadata: Any) -> None:
        meters = MeterSet(run.config)
        periods = meters.first_reading()
        t = _monotonic()
        first = not run.stages
        if first:
            run.ctx.estimated = meters.estimated
            run.t0 = t
        run.ctx.periods.update(periods)
        restored, self._restore = (self._restore, None) if name == "fit" else (None, self._restore)
        ledger = Ledger(run.ctx, name, len(run.stages), t, restored)
        stage = _Stage(name, ledger, meters)
        run.stages.append(stage)
        run.t = t
        self._ledger = ledger
        self._steps = 0
        _lifecycle.watch(self)
        if first:
            idle = self._measure_idle(meters, ledger) if run.config.idle_baseline_s > 0 else None
            run.head = _head(run, meters, hardware, metadata, idle)
        self._merge_meters(run, meters)
        self._write(now=True)

    def _measure_idle(self, meters: MeterSet, ledger: Ledger) -> dict[str, Any]:
        before = ledger.other.copy()
        time.sleep(self.config.idle_baseline_s)
        self._read()
        s = ledger.other.seconds - before.seconds
        ctx = ledger.ctx
        for d, period in ctx.periods.items():
            j = ledger.other.joules.get(d)
            j = None if j is None else j - before.joules.get(d, 0.0)
            ctx.idle_w[d] = None if j is None or s <= 0 or (j == 0.0 and s < period) else j / s
        ctx.idle_measured = True
        known = [w for w in ctx.idle_w.values() if w is not None]
        return {"seconds": s, "watts": sum(known) if known else None,
                "watts_by_domain": dict(ctx.idle_w)}

    @staticmethod
    def _merge_meters(run: _Run, meters: MeterSet) -> None:
        head = run.head  # values are replaced, never changed in place (the writer reads them)
        known = {(m["name"], tuple(m["domains"])) for m in head["meters"]}
        head["meters"] = head["meters"] + [
            m for m in meters.info if (m["name"], tuple(m["domains"])) not in known]
        head["unavailable_meters"] = {**head["unavailable_meters"], **meters.unavailable}

    @staticmethod
    def _note_meters(run: _Run, meters: MeterSet) -> None:
        head = run.head
        head["approximate_domains"] = sorted(set(head["approximate_domains"])
                                             | set(meters.approximate_domains()))
        if meters.excluded_joules is not None and head["excluded_estimates"] is not None:
            previous = head["excluded_estimates"]["joules_by_domain"] or {}
            head["excluded_estimates"] = {**head["excluded_estimates"], "joules_by_domain": {
                d: previous.get(d, 0.0) + j for d, j in meters.excluded_joules.items()}}

    def end_stage(self, status: RunStatus = "completed",
                  error: BaseException | None = None) -> dict[str, Any] | None:
        """End the running stage: an open epoch is closed as incomplete (not counted in
        ``epochs_completed``), the meters opened for it are closed, the summary is written.
        Returns the summary, or None when no stage was running. Never raises for a meter."""
        stage, run = self._stage, self._run
        if status not in _ENDED:
            raise ConfigurationError(
                f"EnergyTracker.end_stage(status={status!r}): expected one of {_ENDED!r}"
            )
        if stage is None or run is None:
            return self._last_summary
        try:
            if not self._broken:
                self._read()
                if stage.ledger.epoch_open:
                    run.epochs.append(stage.ledger.end_epoch(complete=False))
        finally:
            stage.meters.close()
            self._note_meters(run, stage.meters)
            stage.status, stage.finished_at = status, _now_iso()
            stage.error = None if error is None else f"{type(error).__name__}: {error}"
            self._ledger = None
            _lifecycle.unwatch(self)
        self._write(now=True)
        self._last_summary = render(self._snapshot())
        return self._last_summary

    def finish(self, status: RunStatus = "completed",
               error: BaseException | None = None) -> dict[str, Any]:
        """End the running stage and the run: write the final summary and return it.

        Idempotent: a second call returns the same summary. Never raises because of a meter.
        """
        self.end_stage(status, error)
        if self._run is not None and not self._run.closed:
            self._close_run()
        return self._last_summary if self._last_summary is not None else {"status": self.status}

    def _close_run(self) -> None:
        run = self._run
        assert run is not None
        run.closed = True
        if run.file is not None:
            run.file.close()

    def __enter__(self) -> EnergyTracker:
        if self._stage is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            self.finish("completed")
        else:
            self.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", exc)

    # windows, batches, epochs --------------------------------------------------------------
    @_guarded("starting a window")
    def start_window(self, phase: str, epoch: int) -> None:
        """Begin a window of ``phase`` in ``epoch`` (one meter read); a window opened while
        another is open pauses the outer one until this one ends."""
        if phase not in PHASES:
            raise ConfigurationError(
                f"EnergyTracker.start_window(phase={phase!r}): expected one of {PHASES!r}"
            )
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigurationError(
                f"EnergyTracker.start_window(epoch={epoch!r}): expected an int >= 0"
            )
        ledger = self._require("start_window()")
        self._read()
        ledger.open(phase, epoch)

    def add_batch(self, samples: int | None, batches: int = 1) -> StepRecord | None:
        """Count ``batches`` batches holding ``samples`` samples in all (None: unknown, so
        J/sample stays unknown) in the open window. No meter read, unless step-level logging
        is on (``log_every_n_steps``) and a step reading is due: then its record is returned.
        """
        ledger = self._ledger
        acc = ledger.current if ledger is not None else None
        if acc is None:
            if self.config.on_error == "warn":
                return None
            raise WattwiseError("EnergyTracker.add_batch(): no window is open; call "
                                "start_window(phase, epoch) first")
        if samples is None:
            acc.samples_unknown = True
        elif samples < 0 or batches < 0:
            raise ConfigurationError(f"EnergyTracker.add_batch(samples={samples!r}, "
                                     f"batches={batches!r}): expected both >= 0")
        else:
            acc.samples += samples
        acc.batches += batches
        every = self.config.log_every_n_steps
        if every is None:
            return None
        self._steps += batches
        return self.step_reading() if self._steps >= every else None

    def count_batch(self, batch: Any, batch_size_fn: Callable[[Any], Any] | None = None
                    ) -> StepRecord | None:
        """:meth:`add_batch` for one batch, its samples counted by
        :func:`wattwise.samples.count_samples`; a batch it cannot count makes the phase's
        samples unknown, with one warning."""
        ledger = self._ledger
        if ledger is None or ledger.current is None:
            return None
        n = count_samples(batch, batch_size_fn)
        if n is None:
            fix = ("batch_size_fn returned something other than an int >= 0" if batch_size_fn
                   else "pass batch_size_fn=<batch -> number of samples>")
            self._warn_once("samples", f"{self.config.owner} cannot count the samples in a "
                            f"batch of type {type(batch).__name__!r} ({fix}); joules per "
                            "sample stay unknown for that phase", WattwiseWarning)
        return self.add_batch(n)

    @_guarded("a step-level reading")
    def step_reading(self) -> StepRecord | None:
        """Step-level window: a record once ``min_window_s`` has passed since the last one
        (reads meters only when the clock says so), else None."""
        ledger = self._ledger
        if ledger is None or _monotonic() - ledger.step_started_s < self.config.min_window_s:
            return None
        self._steps = 0
        self._read()
        return ledger.step()

    @_guarded("ending a window")
    def end_window(self) -> PhaseRecord | None:
        """Close the innermost open window (one meter read) and return its record."""
        ledger = self._require("end_window()")
        if ledger.phase is None:
            raise WattwiseError("EnergyTracker.end_window(): no window is open; call "
                                "start_window(phase, epoch) first")
        self._read()
        return ledger.close()

    @_guarded("ending an epoch")
    def end_epoch(self) -> EpochRecord | None:
        """Close the epoch (open windows first; several windows of a phase are summed) and
        have the summary rewritten by the background writer."""
        ledger = self._require("end_epoch()")
        if ledger.phase is not None:
            self._read()
        rec = ledger.end_epoch()
        self._run.epochs.append(rec)  # type: ignore[union-attr]
        self._write()
        return rec

    # internals -----------------------------------------------------------------------------
    @property
    def _stage(self) -> _Stage | None:
        run = self._run
        return run.stages[-1] if run and run.stages and run.stages[-1].status == "running" else None

    def _require(self, what: str) -> Ledger:
        if self._ledger is None:
            raise WattwiseError(f"EnergyTracker.{what}: the tracker is {self.status!r}; call "
                                "start() first (and not after finish())")
        return self._ledger

    def _read(self) -> None:
        stage, run = self._stage, self._run
        if stage is None or run is None:
            return
        deltas = stage.meters.deltas(run.ctx.periods)
        run.t = _monotonic()
        stage.ledger.feed(deltas, run.t)

    def _fail(self, what: str, exc: BaseException) -> None:
        """Measurement never kills training: report once, stop measuring, keep what we have."""
        if not self._broken:
            self._broken = True
            warn(f"{self.config.owner}: {what} failed ({type(exc).__name__}: {exc}); energy "
                 "measurement stops here, training continues and what was measured is kept",
                 MeterWarning)

    def _warn_once(self, key: str, message: str, category: type[WattwiseWarning]) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warn(message, category)

    def _snapshot(self) -> RunSnapshot:
        run = self._run
        assert run is not None
        stages = tuple(
            StageSnapshot(
                s.name, s.status, s.error, s.started_at, s.finished_at,
                s.ledger.epochs_completed(),
                None if s.ledger.restored is None else {"epochs": s.ledger.restored["epochs"]},
                {k: a.copy() for k, a in s.ledger.totals().items()},
            )
            for s in run.stages
        )
        ctx = dataclasses.replace(run.ctx, periods=dict(run.ctx.periods), idle_w=dict(run.ctx.idle_w))
        return RunSnapshot(
            head=run.head, status=self.status, error=next((s.error for s in stages if s.error), None),
            finished_at=None if self._stage else (stages[-1].finished_at if stages else None),
            duration_s=run.t - run.t0, ctx=ctx, stages=stages, epochs=run.epochs,
            n_epochs=len(run.epochs), advice=run.advice,
        )

    def _write(self, *, now: bool = False) -> None:
        """Rewrite the summary file: on this thread when ``now``, else in the background.
        A failure warns once; training continues."""
        run = self._run
        f = run.file if run is not None else None
        if f is None:
            return
        error: BaseException | None = f.error
        if error is None:
            try:
                snap = self._snapshot()
                f.write_now(snap) if now else f.submit(snap)
            except (OSError, ValueError, TypeError) as e:
                error = e
        if error is not None:
            self._warn_once("write", f"{self.config.owner}(summary_path={str(f.path)!r}): "
                            f"cannot write the run summary ({type(error).__name__}: {error}); "
                            "training continues", WattwiseWarning)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until the summary file holds every finished epoch; False if ``timeout_s``
        seconds ran out first."""
        f = self._run.file if self._run is not None else None
        return True if f is None else f.flush(timeout_s)

    # queries -------------------------------------------------------------------------------
    @property
    def estimated(self) -> bool:
        """True when the joules come from estimates (no hardware counter is in use)."""
        return self._run is not None and self._run.ctx.estimated

    @property
    def meters(self) -> tuple[Meter, ...]:
        """The meters the running stage reads (failed ones dropped)."""
        stage = self._stage
        return () if stage is None or self._broken else tuple(stage.meters.active)

    @property
    def phase(self) -> str | None:
        """The innermost open window's phase, or None."""
        return None if self._ledger is None else self._ledger.phase

    @property
    def epoch(self) -> int | None:
        """The innermost open window's epoch, or None."""
        return None if self._ledger is None else self._ledger.epoch

    @property
    def stage(self) -> str | None:
        """The running stage's name (``fit``, ``validate``, ``test``, ``predict``), or None."""
        stage = self._stage
        return None if stage is None else stage.name

    def stage_count(self, name: str) -> int:
        """How many stages named ``name`` the current run has begun."""
        return 0 if self._run is None else sum(s.name == name for s in self._run.stages)

    @property
    def resume_epoch(self) -> int | None:
        """The epoch a mid-epoch checkpoint was taken in, until a window continues it."""
        ledger = self._ledger
        return None if ledger is None or ledger._resume is None else ledger._resume[0]

    @property
    def status(self) -> str:
        """``"created"`` before the first stage, ``"running"`` during one, then the first
        non-completed status of the run's stages, else ``"completed"``."""
        run = self._run
        if run is None or not run.stages:
            return "created"
        statuses = [s.status for s in run.stages]
        if "running" in statuses:
            return "running"
        return next((s for s in ("failed", "interrupted") if s in statuses), "completed")

    @property
    def summary_path(self) -> str | None:
        """The current run's summary file, or None."""
        f = self._run.file if self._run is not None else None
        return None if f is None else str(f.path)

    @property
    def global_rank(self) -> int:
        return 0 if self._run is None else self._run.context.global_rank

    def totals(self) -> dict[str, PhaseRecord]:
        """Run totals per phase (epoch = -1) over all stages, checkpoint totals included, plus
        ``"other"`` (time outside any window, including the idle baseline)."""
        summary = render(self._snapshot(), epochs=False) if self._run else None
        if summary is None:
            return {}
        t = summary["totals"]
        return {k: PhaseRecord(**v) for k, v in {**t["phases"], "other": t["other"]}.items()}

    def run_total(self) -> PhaseRecord:
        """The whole run (all phases and ``other``) as one record, phase ``"run"``, epoch -1."""
        return PhaseRecord(**render(self._snapshot(), epochs=False)["totals"]["run"])

    def summary(self) -> dict[str, Any]:
        """The run summary as a JSON-serialisable dict (schema in docs/summary-schema.md)."""
        return render(self._snapshot()) if self._run else {"status": self.status}

    def set_advice(self, advice: Mapping[str, Any]) -> None:
        """Store the sizing advice (JSON form) in the run summary."""
        if not isinstance(advice, Mapping):
            raise ConfigurationError(f"EnergyTracker.set_advice(advice={advice!r}): expected a mapping")
        if self._run is not None:
            self._run.advice = dict(advice)
            if self._stage is None:
                self._write(now=True)
                self._last_summary = render(self._snapshot())

    @property
    def advice_pending(self) -> bool:
        """True while a fit stage runs and no sizing check was tried in this run."""
        stage = self._stage
        return stage is not None and stage.name == "fit" and not self._run.advice_tried  # type: ignore[union-attr]

    def check_advice(self, check: Callable[..., Any], *args: Any) -> None:
        """Run the sizing check ``check(*args)`` once per run; its failure leaves the advice
        null (logged at INFO), never stops training nor measurement."""
        if self._run is None:
            return
        self._run.advice_tried = True
        try:
            check(*args)
        except Exception as e:  # noqa: BLE001 - the advice never breaks training
            logging.getLogger("wattwise").info("%s: no sizing advice for this model: %r",
                                               self.config.owner, e)

    def print_table(self) -> None:
        """Print the run table (:func:`wattwise.console.format_run_table`) on rank 0."""
        if self._run is None or self._run.context.global_rank != 0:
            return
        try:
            from wattwise.console import format_run_table

            print(format_run_table(self.summary()))
        except Exception as e:  # noqa: BLE001 - a table never breaks training
            warn(f"{self.config.owner}: the console table failed ({e!r})", WattwiseWarning)

    # checkpoints ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Cumulative totals for checkpoints: per phase and ``other``, complete epochs, and the
        open epoch's partial sums (one meter read when a stage is running)."""
        stages = [] if self._run is None else [s for s in self._run.stages if s.name == "fit"]
        if not stages:
            return {}
        if stages[-1] is self._stage:
            self._read()
        return stages[-1].ledger.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict` (a checkpoint): the next ``fit`` stage continues its
        totals, epoch count and the epoch it was taken in. A second call replaces the first."""
        self._restore = restore_state(state)


def _country_carbon(code: str) -> float:
    try:
        from wattwise.meters.codecarbon import carbon_intensity_g_per_kwh
    except ImportError as e:
        raise ConfigurationError(
            f"EnergyTracker(country_iso_code={code!r}) needs codecarbon's offline data ({e}); "
            "install it with `pip install 'wattwise[codecarbon]'` or pass "
            "carbon_intensity_g_per_kwh=<g per kWh> instead"
        ) from e
    try:
        value = float(carbon_intensity_g_per_kwh(code))
    except MeterUnavailableError as e:
        raise ConfigurationError(
            f"EnergyTracker(country_iso_code={code!r}): {e}; install codecarbon "
            "(`pip install 'wattwise[codecarbon]'`) or pass carbon_intensity_g_per_kwh="
        ) from e
    if not math.isfinite(value):
        raise ConfigurationError(f"EnergyTracker(country_iso_code={code!r}): no carbon intensity")
    return value


def _head(run: _Run, meters: MeterSet, hardware: Any, metadata: Any,
          idle: dict[str, Any] | None) -> dict[str, Any]:
    from wattwise._version import __version__
    from wattwise.summary import SCHEMA_VERSION

    cfg, carbon = run.config, run.ctx.carbon_g_per_kwh
    source = "argument" if cfg.carbon_intensity_g_per_kwh is not None else (
        f"codecarbon offline data for {cfg.country_iso_code}")
    return {
        "schema_version": SCHEMA_VERSION,
        "wattwise_version": __version__,
        "run_name": cfg.run_name,
        "started_at": _now_iso(),
        "meters": [],
        "unavailable_meters": {},
        "approximate_domains": meters.approximate_domains(),
        "excluded_estimates": None if not meters.kept_out else {
            "joules_by_domain": None,
            "note": "estimates kept out of the measured joules because a hardware counter was "
                    "in use; joules_by_domain is null until the stage ends",
        },
        "hardware": {
            "platform": platform.platform(), "machine": platform.machine(),
            "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), **dict(hardware or {}),
        },
        "metadata": dict(metadata or {}),
        "config": {"min_window_s": cfg.min_window_s, "node_meters": cfg.node_meters,
                   "gpu_devices": None if cfg.gpu_devices is None else list(cfg.gpu_devices)},
        "idle_baseline": idle,
        "carbon_intensity": None if carbon is None else {"g_per_kwh": carbon, "source": source},
    }

