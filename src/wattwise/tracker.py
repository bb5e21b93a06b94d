"""``EnergyTracker``: the one owner of run state, framework-neutral. Callbacks compose it.

**Runs and stages.** A run is one summary file. It holds the stages (``fit``, ``validate``,
``test``, ``predict``) begun on this tracker, each with its own epochs: ``test`` after ``fit``
appends a stage. A ``fit`` begun when the run already has one starts a new run (its file gets
a ``.run2`` suffix instead of overwriting the first); only :meth:`load_state_dict` (a
checkpoint) carries totals over. Meters the tracker opened by name are opened for each stage
and closed at its end; meter instances the user passed are never closed.

**Blocks.** ``with tracker:`` is a run (begun and ended, the error recorded); ``with
tracker.epoch():`` an auto-numbered epoch and ``with tracker.phase("train"):`` a window, each
closed when its body raises (:class:`EpochBlock`, :class:`PhaseBlock`).

**Failures.** With ``on_error="warn"`` (the callbacks) an error inside measurement is one
:class:`~wattwise.errors.MeterWarning`; measurement stops, training goes on, what was measured
is kept. A stage an uncaught exception ends is ``"failed"`` (see :mod:`wattwise._lifecycle`).
Accounting: :mod:`wattwise.accounting`; summary: :mod:`wattwise.summary`; meters:
:mod:`wattwise.meterset`; the run record: :mod:`wattwise.run`. Drive it from one thread.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from types import TracebackType
from typing import Any, Literal

import wattwise._lifecycle as _lifecycle
from wattwise._warn import Guard, guarded, warn
from wattwise.accounting import PHASES, Ledger, restore_state
from wattwise.config import RunContext, TrackerConfig
from wattwise.errors import (
    ConfigurationError,
    MeterUnavailableError,
    WattwiseError,
    WattwiseWarning,
)
from wattwise.meters.base import Meter
from wattwise.meterset import MeterSet
from wattwise.records import EpochRecord, PhaseRecord, StepRecord
from wattwise.run import Run, Stage
from wattwise.samples import count_samples
from wattwise.summary import render

__all__ = ["PHASES", "EnergyTracker", "EpochBlock", "PhaseBlock", "RunStatus"]

RunStatus = Literal["running", "completed", "interrupted", "failed"]
_ENDED = ("completed", "interrupted", "failed")
_ADVICE_WAIT_S = 30.0  # the longest a completed stage's end waits for a background sizing check
_monotonic = time.monotonic


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
        log_every_n_steps: with this, :meth:`add_batch` takes a step-level reading every that
            many batches (at most one per ``min_window_s``) and returns it; None = off.
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
        log_every_n_steps: int | None = None,
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
                log_every_n_steps=log_every_n_steps,
            )
        elif not isinstance(config, TrackerConfig):
            raise ConfigurationError(f"EnergyTracker(config={config!r}): expected a TrackerConfig")
        self.config = config
        self._run: Run | None = None
        self._ledger: Ledger | None = None  # the running stage's (the per-batch path reads it)
        self._guard = Guard(config.owner, config.on_error)
        self._restore: dict[str, Any] | None = None  # from load_state_dict, for the next fit
        self._steps = 0  # batches since the last step-level reading
        self._every = config.log_every_n_steps  # (read on every batch)
        self._min_window_s = config.min_window_s
        self._last_summary: dict[str, Any] | None = None
        self._epoch_block: int | None = None  # the number of the open ``with epoch()`` block

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
            raise ConfigurationError(f"EnergyTracker.begin_stage(stage={stage!r}): expected "
                                     "'fit', 'validate', 'test' or 'predict'")
        if self._stage is not None:
            self.end_stage("interrupted", WattwiseError(f"{stage!r} began before it ended"))
        self._guard.broken = False
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
            if self._guard.raises:
                raise
            self._guard.fail("starting the energy measurement", e)

    def _new_run(self, context: RunContext) -> Run:
        cfg = dataclasses.replace(
            self.config, node_meters=self.config.node_meters and context.local_rank == 0,
            gpu_devices=self.config.gpu_devices if context.gpu_devices is None else context.gpu_devices,
        )
        path = cfg.summary_path
        if path == "auto":
            if context.log_dir is None:
                self._guard.once("auto", f"{cfg.owner}(summary_path='auto'): there is no log "
                                "folder (no logger), so no run summary is written; pass "
                                "summary_path='<file>.json' to write one", WattwiseWarning)
                path = None
            else:
                path = os.path.join(context.log_dir, "wattwise_summary.json")
        self._run = Run(0 if self._run is None else self._run.index + 1, cfg, context, path)
        return self._run

    def _open_stage(self, run: Run, name: str, hardware: Any, metadata: Any) -> None:
        meters = MeterSet(run.config)
        run.ctx.periods.update(meters.first_reading())
        t = _monotonic()
        restored, self._restore = (self._restore, None) if name == "fit" else (None, self._restore)
        ledger = Ledger(run.ctx, name, len(run.stages), t, restored)
        first = not run.stages
        run.add_stage(Stage(name, ledger, meters), t, hardware, metadata)
        self._ledger, self._steps = ledger, 0
        _lifecycle.watch(self)
        if first and run.config.idle_baseline_s > 0:
            run.head["idle_baseline"] = self._measure_idle(ledger)
        self._write(now=True)

    def _measure_idle(self, ledger: Ledger) -> dict[str, Any]:
        before = ledger.other.copy()
        time.sleep(self.config.idle_baseline_s)
        self._read()
        return ledger.idle_baseline(before)

    def end_stage(self, status: RunStatus = "completed",
                  error: BaseException | None = None) -> dict[str, Any] | None:
        """End the running stage: an open epoch is closed as incomplete (not counted in
        ``epochs_completed``), the meters opened for it are closed, the summary is written.
        Returns the summary, or None when no stage was running. Never raises for a meter."""
        stage, run = self._stage, self._run
        if status not in _ENDED:
            raise ConfigurationError(f"EnergyTracker.end_stage(status={status!r}): expected one "
                                     f"of {_ENDED!r}")
        if stage is None or run is None:
            return self._last_summary
        try:
            run.collect_advice(_ADVICE_WAIT_S if status == "completed" else 0.0)
            if not self._guard.broken:
                self._read()
                if stage.ledger.epoch_open:
                    run.epochs.append(stage.ledger.end_epoch(complete=False))
        finally:
            stage.meters.close()
            run.note_meters(stage.meters)
            stage.end(status, error)
            run.stage_ended(stage)
            self._ledger = None
            _lifecycle.unwatch(self)
        self._write(now=True)
        self._last_summary = render(run.snapshot())
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
        self._require_run("finish()").close()

    def __enter__(self) -> EnergyTracker:
        if self._stage is None:
            self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.finish(_lifecycle.ended_status(exc), exc)  # type: ignore[arg-type]

    # windows, batches, epochs --------------------------------------------------------------
    @guarded("starting a window")
    def start_window(self, phase: str, epoch: int, plan: Any = None) -> None:
        """Begin a window of ``phase`` in ``epoch`` (one meter read); a window opened while
        another is open pauses the outer one until this one ends. With ``plan`` (a
        :class:`~wattwise.samples.LoaderPlan` of the pass), :meth:`count_batch` counts batches
        only and the samples follow from the plan (nothing per batch looks at the batch)."""
        if phase not in PHASES:
            raise ConfigurationError(f"EnergyTracker.start_window(phase={phase!r}): expected one "
                                     f"of {PHASES!r}")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ConfigurationError(f"EnergyTracker.start_window(epoch={epoch!r}): expected an "
                                     "int >= 0")
        ledger = self._require("start_window()")
        self._read()
        ledger.open(phase, epoch, plan)

    def add_batch(self, samples: int | None, batches: int = 1) -> StepRecord | None:
        """Count ``batches`` batches holding ``samples`` samples in all (None: unknown, so
        J/sample stays unknown) in the open window. No meter read, unless step-level logging
        is on (``log_every_n_steps``) and a step reading is due: then its record is returned.
        """
        ledger = self._ledger
        if ledger is None or (acc := ledger.current) is None:
            if self._guard.raises:
                raise WattwiseError("EnergyTracker.add_batch(): no window is open; call "
                                    "start_window(phase, epoch) first")
            return None
        if samples is None:
            acc.samples_unknown = True
        elif samples < 0 or batches < 0:
            raise ConfigurationError(f"EnergyTracker.add_batch(samples={samples!r}, "
                                     f"batches={batches!r}): expected both >= 0")
        else:
            acc.samples += samples
        acc.batches += batches
        return None if self._every is None else self._stepped(ledger, batches)

    def count_batch(self, batch: Any, batch_size_fn: Callable[[Any], Any] | None = None
                    ) -> StepRecord | None:
        """:meth:`add_batch` for one batch, its samples counted by
        :func:`wattwise.samples.count_samples`; a batch it cannot count makes the phase's
        samples unknown, with one warning. The per-batch hot path of the callbacks."""
        ledger = self._ledger
        if ledger is None or (acc := ledger.current) is None:
            return None
        if ledger.planned:  # samples from the loader's plan when the window closes
            acc.batches += 1
            return None if self._every is None else self._stepped(ledger, 1)
        n = count_samples(batch, batch_size_fn)
        if n is None:
            fix = ("batch_size_fn returned something other than an int >= 0" if batch_size_fn
                   else "pass batch_size_fn=<batch -> number of samples>")
            self._guard.once("samples", f"{self.config.owner} cannot count the samples in a "
                             f"batch of type {type(batch).__name__!r} ({fix}); joules per "
                             "sample stay unknown for that phase", WattwiseWarning)
            acc.samples_unknown = True
        else:
            acc.samples += n
        acc.batches += 1
        return None if self._every is None else self._stepped(ledger, 1)

    def _stepped(self, ledger: Ledger, batches: int) -> StepRecord | None:
        """Step-level logging (``log_every_n_steps`` set): a reading once that many batches
        and ``min_window_s`` have passed since the last one (the one step clock)."""
        self._steps += batches
        if self._steps < self._every or _monotonic() - ledger.step_started_s < self._min_window_s:  # type: ignore[operator]
            return None
        return self.step_reading()

    @guarded("a step-level reading")
    def step_reading(self) -> StepRecord | None:
        """Step-level window: a record once ``min_window_s`` has passed since the last one
        (reads meters only when the clock says so), else None."""
        ledger = self._ledger
        if ledger is None or _monotonic() - ledger.step_started_s < self._min_window_s:
            return None
        self._steps = 0
        self._read()
        return ledger.step()

    @guarded("ending a window")
    def end_window(self) -> PhaseRecord | None:
        """Close the innermost open window (one meter read) and return its record."""
        ledger = self._require("end_window()")
        if ledger.phase is None:
            raise WattwiseError("EnergyTracker.end_window(): no window is open; call "
                                "start_window(phase, epoch) first")
        self._read()
        return ledger.close()

    @guarded("ending an epoch")
    def end_epoch(self, *, complete: bool = True) -> EpochRecord | None:
        """Close the epoch (open windows first; several windows of a phase are summed) and
        have the summary rewritten by the background writer. ``complete=False`` records an
        epoch the loop broke out of (not counted in ``epochs_completed``)."""
        ledger = self._require("end_epoch()")
        if ledger.phase is not None:
            self._read()
        rec = ledger.end_epoch(complete=complete)
        run, stage = self._run, self._stage
        run.epochs.append(rec)  # type: ignore[union-attr]
        run.epoch_ended(stage, rec)  # type: ignore[union-attr,arg-type]
        run.collect_advice()  # type: ignore[union-attr]
        self._write()
        return rec

    # blocks: epochs and phases as context managers -----------------------------------------
    def epoch(self) -> EpochBlock:
        """``with tracker.epoch():`` one epoch, numbered automatically (0, 1, 2, ... within the
        stage; a restored run continues its checkpoint's count). Leaving the block ends the
        epoch (:meth:`end_epoch`), also when the body raises: the epoch is then recorded as
        incomplete and the exception propagates. ``as`` gives an :class:`EpochBlock` whose
        ``record`` is the :class:`~wattwise.records.EpochRecord` after the block (None for an
        epoch in which no phase window was opened: it records nothing)."""
        return EpochBlock(self)

    def phase(self, phase: str) -> PhaseBlock:
        """``with tracker.phase("train"):`` a window of ``phase`` (``train``, ``validate``,
        ``test``, ``predict``) in the open ``with epoch()`` block, else in the open epoch (or
        the next one; :meth:`end_epoch` or :meth:`finish` ends it). Leaving the block closes the
        window, also when the body raises (the exception propagates); a block inside another
        pauses the outer one. ``as`` gives a :class:`PhaseBlock` whose ``record`` is the
        window's :class:`~wattwise.records.PhaseRecord` after the block."""
        if phase not in PHASES:
            raise ConfigurationError(f"EnergyTracker.phase(phase={phase!r}): expected one of "
                                     f"{PHASES!r}")
        return PhaseBlock(self, phase)

    @guarded("starting an epoch")
    def _enter_epoch(self) -> int | None:
        ledger = self._require("epoch()")
        if self._epoch_block is not None:
            raise WattwiseError(f"EnergyTracker.epoch(): epoch {self._epoch_block} is open; "
                                "epoch blocks do not nest")
        if ledger.epoch_open:
            raise WattwiseError(f"EnergyTracker.epoch(): epoch {ledger.next_epoch()} is open "
                                "(windows begun outside an epoch block); call end_epoch() first")
        self._epoch_block = ledger.next_epoch()
        return self._epoch_block

    def _exit_epoch(self, failed: bool) -> EpochRecord | None:
        self._epoch_block = None
        ledger = self._ledger
        if ledger is None or not ledger.epoch_open:
            return None
        rec: EpochRecord | None = self._quietly(failed, "ending an epoch", self.end_epoch,
                                                complete=not failed)
        return rec

    @guarded("starting a window")
    def _enter_phase(self, phase: str) -> tuple[Ledger, int] | None:
        ledger = self._require(f"phase({phase!r})")
        epoch = self._epoch_block if self._epoch_block is not None else ledger.next_epoch()
        depth = ledger.depth
        self.start_window(phase, epoch)
        return ledger, depth

    def _exit_phase(self, ledger: Ledger, depth: int, failed: bool) -> PhaseRecord | None:
        rec = None
        while self._ledger is ledger and ledger.depth > depth and not self._guard.broken:
            rec = self._quietly(failed, "ending a window", self.end_window)
        return rec

    def _quietly(self, failed: bool, what: str, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """``fn(**kwargs)`` on leaving a block; while the body's exception propagates, an error
        here is one warning (the body's exception is the one the user sees)."""
        if not failed:
            return fn(**kwargs)
        try:
            return fn(**kwargs)
        except Exception as e:  # noqa: BLE001 - the body's exception is the one to see
            self._guard.fail(what, e)
            return None

    # internals -----------------------------------------------------------------------------
    @property
    def _stage(self) -> Stage | None:
        return None if self._run is None else self._run.running

    def _require_run(self, what: str) -> Run:
        if self._run is None:
            raise WattwiseError(f"EnergyTracker.{what}: no run yet; call start() first")
        return self._run

    def _require(self, what: str) -> Ledger:
        if self._ledger is None:
            raise WattwiseError(f"EnergyTracker.{what}: the tracker is {self.status!r}; call "
                                "start() first (and not after finish())")
        return self._ledger

    def _read(self) -> None:
        stage, run = self._stage, self._run
        if stage is None or run is None:
            return
        deltas = stage.meters.deltas(run.ctx.periods, stage.ledger.epoch)
        run.t = _monotonic()
        stage.ledger.feed(deltas, run.t, deltas.unknown)

    def _write(self, *, now: bool = False) -> None:
        """Rewrite the summary file: on this thread when ``now``, else in the background.
        A failure warns once; training continues."""
        run = self._run
        f = run.file if run is not None else None
        if f is None:
            return
        error: BaseException | None = f.error
        if error is None or now:  # the final write is tried even after a failed one
            try:
                snap = run.snapshot()  # type: ignore[union-attr]
                f.write_now(snap) if now else f.submit(snap)
                error = None
            except (OSError, ValueError, TypeError) as e:
                error = e
        if error is not None:
            self._guard.once("write", f"{self.config.owner}(summary_path={str(f.path)!r}): "
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
        return () if stage is None or self._guard.broken else tuple(stage.meters.active)

    @property
    def current_phase(self) -> str | None:
        """The innermost open window's phase, or None."""
        return None if self._ledger is None else self._ledger.phase

    @property
    def current_epoch(self) -> int | None:
        """The innermost open window's epoch, else the open ``with epoch()`` block's, or None."""
        if self._ledger is None:
            return None
        return self._ledger.epoch if self._ledger.phase is not None else self._epoch_block

    @property
    def stage(self) -> str | None:
        """The running stage's name (``fit``, ``validate``, ``test``, ``predict``), or None."""
        return None if self._stage is None else self._stage.name

    def stage_count(self, name: str) -> int:
        """How many stages named ``name`` the current run has begun."""
        return 0 if self._run is None else sum(s.name == name for s in self._run.stages)

    @property
    def resume_epoch(self) -> int | None:
        """The epoch a mid-epoch checkpoint was taken in, until a window continues it."""
        return None if self._ledger is None else self._ledger.resume_epoch

    @property
    def status(self) -> str:
        """``"created"`` before the first stage, ``"running"`` during one, then the first
        non-completed status of the run's stages, else ``"completed"``."""
        run = self._run
        return "created" if run is None or not run.stages else run.status

    @property
    def global_rank(self) -> int:
        return 0 if self._run is None else self._run.context.global_rank

    def totals(self) -> dict[str, PhaseRecord]:
        """Run totals per phase (epoch = -1) over all stages, checkpoint totals included, plus
        ``"other"`` (time outside any window) and ``"run"`` (everything)."""
        t = render(self._require_run("totals()").snapshot(), epochs=False)["totals"]
        return {k: PhaseRecord(**v) for k, v in {**t["phases"], "other": t["other"],
                                                 "run": t["run"]}.items()}

    def run_total(self) -> PhaseRecord:
        """The whole run (all phases and ``other``) as one record, phase ``"run"``, epoch -1."""
        return self.totals()["run"]

    def summary(self) -> dict[str, Any]:
        """The run summary as a JSON-serialisable dict (schema in docs/summary-schema.md)."""
        return render(self._run.snapshot()) if self._run else {"status": self.status}

    def set_advice(self, advice: Mapping[str, Any]) -> None:
        """Store the sizing advice (JSON form) in the run summary."""
        if not isinstance(advice, Mapping):
            raise ConfigurationError(f"EnergyTracker.set_advice(advice={advice!r}): expected a mapping")
        run = self._require_run("set_advice()")
        run.set_advice(dict(advice))
        if self._stage is None:
            self._write(now=True)
            self._last_summary = render(run.snapshot())

    def plan_run(self, epochs: int | None, samples_per_epoch: int | None,
                 announce: bool = False) -> None:
        """The planned fit (``epochs``, ``samples_per_epoch``; None = unknown), for the run's
        forecast (:mod:`wattwise.forecast`): the model's once the advice is in (printed on rank
        0 with ``announce``), the measured projection after each complete epoch."""
        from wattwise.forecast import Forecast

        run = self._require_run("plan_run()")
        run.forecast, run.announce_forecast = Forecast(epochs, samples_per_epoch), announce
        if run.advice is not None:
            run.set_advice(run.advice)

    @property
    def projected_run_joules(self) -> float | None:
        """The measured projection of the whole fit's joules after the last complete epoch
        (None before one, or without a planned number of epochs)."""
        f = None if self._run is None else self._run.forecast
        return None if f is None else f.projected_run_joules

    @property
    def advice_pending(self) -> bool:
        """True while a fit stage runs and no sizing check was tried in this run."""
        return self.stage == "fit" and not self._run.advice_tried  # type: ignore[union-attr]

    def check_advice(self, check: Callable[..., Any], *args: Any) -> None:
        """Run the sizing check ``check(*args)`` once per run; its failure leaves the advice
        null (one warning), never stops training nor measurement. When ``check`` returns a
        :class:`~wattwise.run.Deferred`, its pure part runs on a daemon thread and its result is
        recorded at the next epoch end (the stage end waits for it, up to 30 s)."""
        self._require_run("check_advice()").try_advice(check, *args)

    def guard(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` for adapter code around the tracker calls (run even after a failure,
        so collectives stay matched across ranks); with ``on_error="warn"`` an error in it is
        one warning and measurement stops, never an exception."""
        try:
            return fn(*args)
        except Exception as e:
            if self._guard.raises:
                raise
            self._guard.fail(what, e)
            return None

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
    @guarded("saving the energy totals")
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


class EpochBlock:
    """What ``with tracker.epoch() as e:`` gives: ``e.epoch`` (its number; None when the
    tracker is not measuring) and, after the block, ``e.record`` (its
    :class:`~wattwise.records.EpochRecord`, or None)."""

    __slots__ = ("_tracker", "epoch", "record")

    def __init__(self, tracker: EnergyTracker) -> None:
        self._tracker = tracker
        self.epoch: int | None = None
        self.record: EpochRecord | None = None

    def __enter__(self) -> EpochBlock:
        self.epoch = self._tracker._enter_epoch()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.epoch is not None:
            self.record = self._tracker._exit_epoch(exc is not None)


class PhaseBlock:
    """What ``with tracker.phase("train") as p:`` gives: ``p.phase``, ``p.epoch`` (None when
    the tracker is not measuring) and, after the block, ``p.record`` (the window's
    :class:`~wattwise.records.PhaseRecord`, or None)."""

    __slots__ = ("_opened", "_tracker", "epoch", "phase", "record")

    def __init__(self, tracker: EnergyTracker, phase: str) -> None:
        self._tracker, self.phase = tracker, phase
        self._opened: tuple[Ledger, int] | None = None
        self.epoch: int | None = None
        self.record: PhaseRecord | None = None

    def __enter__(self) -> PhaseBlock:
        self._opened = opened = self._tracker._enter_phase(self.phase)
        if opened is not None and opened[0].depth > opened[1]:
            self.epoch = opened[0].epoch
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._opened is not None:
            self.record = self._tracker._exit_phase(*self._opened, exc is not None)
            self._opened = None
