"""``Run``: the record of one run - its stages, epochs, summary head and summary file.

The tracker owns one ``Run`` at a time and drives it; a ``Run`` knows how to describe itself
(:meth:`Run.snapshot`, which :mod:`wattwise.summary` renders) and nothing about windows.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from wattwise._warn import warn
from wattwise.accounting import Ledger, RecordContext
from wattwise.config import RunContext, TrackerConfig, carbon_of_country, check_summary_path
from wattwise.errors import WattwiseWarning
from wattwise.forecast import Forecast
from wattwise.meterset import MeterSet
from wattwise.records import EpochRecord
from wattwise.summary import SCHEMA_VERSION, RunSnapshot, StageSnapshot, SummaryFile

__all__ = ["Deferred", "Run", "Stage", "now_iso"]


class Deferred:
    """Work split between a daemon thread and the training thread: ``compute()`` (pure: no
    framework, no tracker, no warnings) off the training thread, then ``finish(result)`` on it.
    An exception in ``compute`` is re-raised by :meth:`finish`."""

    def __init__(self, compute: Callable[[], Any], finish: Callable[[Any], None]) -> None:
        self._compute, self._finish = compute, finish
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wattwise-advice", daemon=True)

    def _run(self) -> None:
        try:
            self._result = self._compute()
        except BaseException as e:  # noqa: BLE001 - handed to the training thread
            self._error = e

    def start(self) -> None:
        self._thread.start()

    def done(self, wait_s: float = 0.0) -> bool:
        if wait_s > 0:
            self._thread.join(wait_s)
        return not self._thread.is_alive()

    def finish(self) -> None:
        if self._error is not None:
            raise self._error
        self._finish(self._result)


@functools.lru_cache(maxsize=1)
def _platform_info() -> dict[str, Any]:
    """Platform facts for the summary head, once per process and without a subprocess on
    Linux (``platform.platform()``/``processor()`` run ``uname -p``: ~7 ms at fit start)."""
    u = os.uname() if hasattr(os, "uname") else None
    processor = None
    if u is not None and u.sysname == "Linux":
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                processor = next((line.split(":", 1)[1].strip() for line in f
                                  if line.startswith(("model name", "Hardware", "cpu model"))),
                                 None)
        except OSError:
            processor = None
        name = f"{u.sysname}-{u.release}-{u.machine}"
    else:
        name, processor = platform.platform(), platform.processor()
    return {"platform": name, "machine": platform.machine(), "processor": processor or None,
            "cpu_count": os.cpu_count(), "python": platform.python_version()}


def now_iso() -> str:
    """Wall-clock time now, ISO 8601 UTC, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Stage:
    """One ``fit``/``validate``/``test``/``predict`` call: its ledger and its meters."""

    def __init__(self, name: str, ledger: Ledger, meters: MeterSet) -> None:
        self.name, self.ledger, self.meters = name, ledger, meters
        self.status: str = "running"
        self.error: str | None = None
        self.started_at: str | None = now_iso()
        self.finished_at: str | None = None

    def end(self, status: str, error: BaseException | None) -> None:
        self.status, self.finished_at = status, now_iso()
        self.error = None if error is None else f"{type(error).__name__}: {error}"


class Run:
    """One run: the stages begun on a tracker until the next ``fit`` (one summary file).

    Args:
        index: 0 for the tracker's first run, 1 for the second (its file gets ``.run2``), ...
        config: the tracker's settings, with this process's rank applied.
        context: what the framework said about this process.
        path: the summary file (before rank and run suffixes), or None.
    """

    def __init__(self, index: int, config: TrackerConfig, context: RunContext,
                 path: str | None) -> None:
        from wattwise.summary import summary_file_path

        self.index, self.config, self.context = index, config, context
        carbon = config.carbon_intensity_g_per_kwh
        if config.country_iso_code is not None:
            carbon = carbon_of_country(config.country_iso_code, config.owner)
        self.ctx = RecordContext(carbon_g_per_kwh=carbon)
        self.stages: list[Stage] = []
        self.epochs: list[EpochRecord] = []
        self.head: dict[str, Any] = {}
        self.file: SummaryFile | None = None
        if path is not None:
            final = summary_file_path(path, context.global_rank, index)
            check_summary_path(config.owner, final)  # before training: never replace a FIFO
            self.file = SummaryFile(final)
            moved = self.file.claim()
            if moved is not None:
                warn(f"{config.owner}({moved})", WattwiseWarning)
        self.advice: dict[str, Any] | None = None
        self.advice_tried = False
        self._deferred: Deferred | None = None
        self.forecast: Forecast | None = None
        self.announce_forecast = False
        self.t0 = self.t = 0.0
        self.closed = False

    @property
    def running(self) -> Stage | None:
        """The running stage, or None."""
        last = self.stages[-1] if self.stages else None
        return last if last is not None and last.status == "running" else None

    @property
    def status(self) -> str:
        """``"running"`` during a stage, then the first non-completed stage status, else
        ``"completed"``."""
        statuses = [s.status for s in self.stages]
        if "running" in statuses:
            return "running"
        return next((s for s in ("failed", "interrupted") if s in statuses), "completed")

    def add_stage(self, stage: Stage, t: float, hardware: Any, metadata: Any) -> None:
        if not self.stages:
            self.ctx.estimated = stage.meters.estimated
            self.t0 = t
            self.head = self._head(stage.meters, hardware, metadata)
        self.stages.append(stage)
        self.t = t
        head = self.head  # values are replaced, never changed in place (the writer reads them)
        known = {(m["name"], tuple(m["domains"])) for m in head["meters"]}
        head["meters"] = head["meters"] + [
            m for m in stage.meters.info if (m["name"], tuple(m["domains"])) not in known]
        head["unavailable_meters"] = {**head["unavailable_meters"], **stage.meters.unavailable}

    def try_advice(self, check: Any, *args: Any) -> None:
        """Run the sizing check once; its failure leaves the advice null, with one warning and
        the reason in the summary's ``advice_error``.

        ``check(*args)`` runs on the calling (training) thread. When it returns a
        :class:`Deferred`, its ``compute()`` (the pure model: no framework, no tracker) runs on
        a daemon thread and its ``finish(result)`` back on the training thread, at the next
        :meth:`collect_advice` (epoch ends; the stage end waits for it).
        """
        self.advice_tried = True
        try:
            deferred = check(*args)
        except Exception as e:  # noqa: BLE001 - the advice never breaks training
            self._advice_failed(e)
            return
        if isinstance(deferred, Deferred):
            self._deferred = deferred
            deferred.start()

    def collect_advice(self, wait_s: float = 0.0) -> None:
        """Finish a background sizing check that is done (waiting up to ``wait_s``)."""
        deferred = self._deferred
        if deferred is None or not deferred.done(wait_s):
            if deferred is not None and wait_s > 0:
                self._deferred = None
                self._advice_failed(TimeoutError(
                    f"the sizing check did not finish within {wait_s:g} s"))
            return
        self._deferred = None
        try:
            deferred.finish()
        except Exception as e:  # noqa: BLE001 - the advice never breaks training
            self._advice_failed(e)

    def _advice_failed(self, e: BaseException) -> None:
        reason = f"{type(e).__name__}: {e}"
        logging.getLogger("wattwise").info("%s: no sizing advice: %r", self.config.owner, e)
        warn(f"{self.config.owner}: no sizing advice for this run ({reason})", WattwiseWarning)
        self.head = {**self.head, "advice_error": reason}  # replaced: the writer reads it

    def set_advice(self, advice: dict[str, Any]) -> None:
        """Store the advice; with a planned fit, the model's forecast follows from it."""
        self.advice = advice
        if self.forecast is not None and self.forecast.set_model(advice) is not None:
            text = self.forecast.text()
            if text and self.announce_forecast and self.context.global_rank == 0:
                print(text)

    def epoch_ended(self, stage: Stage, rec: EpochRecord) -> None:
        """After an epoch of ``stage``: the measured projection of the fit."""
        if self.forecast is None or stage.name != "fit" or not rec.complete:
            return

        def so_far() -> float | None:  # asked once; the forecast adds later epochs itself
            joules = [self.ctx.record(p, -1, a).joules
                      for p, a in stage.ledger.totals().items() if p != "other"]
            known = [j for j in joules if j is not None]
            return sum(known) if known and len(known) == len(joules) else None

        self.forecast.project(rec, stage.ledger.epochs_completed(), so_far)

    def stage_ended(self, stage: Stage) -> None:
        """After ``stage`` ended: a fit's forecasts compared with what it measured."""
        if self.forecast is not None and stage.name == "fit":
            totals = {p: self.ctx.record(p, -1, a) for p, a in stage.ledger.totals().items()}
            self.forecast.finish(totals, stage.ledger.epochs_completed())

    def close(self) -> None:
        """No stage will be added: stop the summary writer."""
        self.closed = True
        if self.file is not None:
            self.file.close()

    def note_meters(self, meters: MeterSet) -> None:
        """After a stage's meters closed: approximate domains, the excluded estimates' joules."""
        head = self.head
        head["approximate_domains"] = sorted(set(head["approximate_domains"])
                                             | set(meters.approximate_domains()))
        if meters.excluded_joules is not None and head["excluded_estimates"] is not None:
            previous = head["excluded_estimates"]["joules_by_domain"] or {}
            head["excluded_estimates"] = {**head["excluded_estimates"], "joules_by_domain": {
                d: previous.get(d, 0.0) + j for d, j in meters.excluded_joules.items()}}

    def snapshot(self) -> RunSnapshot:
        """Immutable copies of everything the summary shows (a few microseconds)."""
        stages = tuple(
            StageSnapshot(
                s.name, s.status, s.error, s.started_at, s.finished_at,
                s.ledger.epochs_completed(),
                None if s.ledger.restored is None else {"epochs": s.ledger.restored["epochs"]},
                s.ledger.totals(),  # fresh sums, not the ledger's own
            )
            for s in self.stages
        )
        c = self.ctx
        ctx = RecordContext(dict(c.periods), dict(c.idle_w), c.idle_measured, c.carbon_g_per_kwh,
                            c.estimated)
        status = self.status
        return RunSnapshot(
            head=self.head, status=status,
            error=next((s.error for s in stages if s.status == status and s.error), None),
            finished_at=None if self.running or not stages else stages[-1].finished_at,
            duration_s=self.t - self.t0, ctx=ctx, stages=stages, epochs=self.epochs,
            n_epochs=len(self.epochs), advice=self.advice,
            forecast=None if self.forecast is None else self.forecast.snapshot(),
        )

    def _head(self, meters: MeterSet, hardware: Any, metadata: Any) -> dict[str, Any]:
        from wattwise._version import __version__

        cfg, carbon = self.config, self.ctx.carbon_g_per_kwh
        source = "argument" if cfg.carbon_intensity_g_per_kwh is not None else (
            f"codecarbon offline data for {cfg.country_iso_code}")
        return {
            "schema_version": SCHEMA_VERSION,
            "wattwise_version": __version__,
            "run_name": cfg.run_name,
            "started_at": now_iso(),
            "meters": [],
            "unavailable_meters": {},
            "approximate_domains": meters.approximate_domains(),
            "excluded_estimates": None if not meters.kept_out else {
                "joules_by_domain": None,
                "note": "estimates kept out of the measured joules because a hardware counter "
                        "was in use; joules_by_domain is null until the stage ends",
            },
            "hardware": {**_platform_info(), **dict(hardware or {})},
            "metadata": dict(metadata or {}),
            "config": {"min_window_s": cfg.min_window_s, "node_meters": cfg.node_meters,
                       "gpu_devices": None if cfg.gpu_devices is None else list(cfg.gpu_devices)},
            "idle_baseline": None,
            "carbon_intensity": None if carbon is None else {"g_per_kwh": carbon, "source": source},
            "advice_error": None,
        }
