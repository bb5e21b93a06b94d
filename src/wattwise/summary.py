"""The run summary: its assembly from a run snapshot, atomic writing, reading back.

The schema is documented field by field (with units) in ``docs/summary-schema.md``. A reader
should check ``schema_version`` (:func:`read_summary` does): a change that renames or removes a
field bumps it; adding a field does not.

The tracker hands a :class:`RunSnapshot` (immutable copies of the run's sums, taken in a few
microseconds) to :class:`SummaryFile`; the writer thread assembles the JSON from it
(:func:`render`), so the training thread never builds the summary nor waits on the disk.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any

from wattwise._record import record
from wattwise.accounting import Acc, RecordContext
from wattwise.errors import ConfigurationError
from wattwise.records import EpochRecord

__all__ = [
    "SCHEMA_VERSION",
    "RunSnapshot",
    "StageSnapshot",
    "SummaryFile",
    "read_summary",
    "render",
    "summary_file_path",
    "write_json_atomic",
]

SCHEMA_VERSION = 2
"""Version of the run-summary JSON schema written by :class:`~wattwise.EnergyTracker`."""


@record
class StageSnapshot:
    """One stage (``fit``, ``validate``, ``test``, ``predict``) of a run, frozen."""

    stage: str
    status: str
    error: str | None
    started_at: str | None
    finished_at: str | None
    epochs_completed: int
    resumed_from: Mapping[str, Any] | None
    totals: Mapping[str, Acc]  # phase or "other" -> sums (copies)


@record
class RunSnapshot:
    """Everything the summary shows, as immutable copies: safe to render on another thread.

    ``head`` holds the fields fixed at run start (version, run name, hardware, metadata,
    config, meters, ...); ``epochs[:n_epochs]`` are the run's epoch records.
    """

    head: Mapping[str, Any]
    status: str
    error: str | None
    finished_at: str | None
    duration_s: float
    ctx: RecordContext
    stages: tuple[StageSnapshot, ...]
    epochs: Sequence[EpochRecord]
    n_epochs: int
    advice: Mapping[str, Any] | None
    forecast: Any = None  # a wattwise.forecast.ForecastSnapshot


def _totals(ctx: RecordContext, sums: Mapping[str, Acc]) -> dict[str, Any]:
    phases = {p: ctx.record(p, -1, a).to_dict() for p, a in sums.items() if p != "other"}
    other = ctx.record("other", -1, sums.get("other", Acc())).to_dict()
    return {"phases": phases, "other": other}


def render(snap: RunSnapshot, *, epochs: bool = True) -> dict[str, Any]:
    """The run summary dict of ``snap`` (``epochs=False``: the ``epochs`` list left out)."""
    ctx = snap.ctx
    run: dict[str, Acc] = {}
    stages = []
    for s in snap.stages:
        for key, acc in s.totals.items():
            run.setdefault(key, Acc()).add(acc)
        stages.append({
            "stage": s.stage, "status": s.status, "error": s.error,
            "started_at": s.started_at, "finished_at": s.finished_at,
            "epochs_completed": s.epochs_completed, "resumed_from": s.resumed_from,
            "totals": _totals(ctx, s.totals),
        })
    whole = Acc()
    for acc in run.values():
        whole.add(acc)
    whole.samples, whole.samples_unknown = 0, True  # samples belong to phases
    totals = _totals(ctx, run)
    totals["run"] = replace(ctx.record("run", -1, whole), samples=None).to_dict()
    fit = [s for s in snap.stages if s.stage == "fit"]
    out = dict(snap.head)
    out.update({
        "status": snap.status,
        "error": snap.error,
        "finished_at": snap.finished_at,
        "duration_s": snap.duration_s,
        "estimated": ctx.estimated,
        "resumed_from": fit[-1].resumed_from if fit else None,
        "epochs_completed": fit[-1].epochs_completed if fit else 0,
        "stages": stages,
        "epochs": [e.to_dict() for e in snap.epochs[: snap.n_epochs]] if epochs else None,
        "totals": totals,
        "advice": None if snap.advice is None else dict(snap.advice),
        "forecast": None if snap.forecast is None else snap.forecast.to_json(),
    })
    return out


def summary_file_path(path: str | PathLike[str], global_rank: int, run_index: int) -> Path:
    """Rank 0 writes ``path``, rank N ``<stem>.rankN<suffix>``; the second run of the same
    monitor ``<stem>.run2<suffix>`` (a run never overwrites an earlier run's file)."""
    p = Path(path)
    tag = (f".run{run_index + 1}" if run_index else "") + (f".rank{global_rank}" if global_rank else "")
    return p.with_name(f"{p.stem}{tag}{p.suffix}") if tag else p


# --------------------------------------------------------------------------------------------
# writing


def write_json_atomic(path: str | PathLike[str], data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically (temporary file, fsync, ``os.replace``):
    a reader, or a crash, sees the old file or the new one, never half of one. The parent
    folder is created if needed.

    Raises:
        OSError: when the folder or file cannot be written.
        ValueError: when ``data`` holds NaN/infinity or something not JSON-serialisable.
    """
    _write_text_atomic(Path(path), _dumps(data))


def _dumps(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=1, allow_nan=False, default=_json_default)


def _umask() -> int:
    try:  # Linux >= 4.7 says it without changing it (os.umask would, for every thread)
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_text_atomic(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink() or (os.path.lexists(dest) and not dest.is_file()):
        raise OSError(f"{str(dest)!r} is a symbolic link or not a regular file: not replaced")
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (best effort; not possible on every OS)
        dir_fd = os.open(dest.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


class SummaryFile:
    """One run-summary file, rewritten atomically by a background thread.

    The training thread submits a :class:`RunSnapshot`; the writer thread renders it, joins
    the epoch records (each serialised once), writes a temporary file, fsyncs and renames it
    over the summary. Requests coalesce: when the disk is slower than the epochs, the writer
    skips to the newest snapshot, which holds every finished epoch. A crash loses at most the
    epochs of the write in flight; :meth:`write_now` writes synchronously, after any write in
    flight.

    Background writes are at least ``min_interval_s`` apart: with short epochs the file is
    rewritten about once a second, not once an epoch, and the writer's work (rendering, JSON,
    fsync) stays off the training thread's hooks. The file lags the newest finished epoch by
    at most about ``min_interval_s``.

    Args:
        path: the summary file.
        min_interval_s: least seconds between two background writes (default 1.0).
    """

    def __init__(self, path: str | PathLike[str], min_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.min_interval_s = min_interval_s
        self._last_write = -float("inf")  # time.monotonic() of the last background write
        self.error: BaseException | None = None  # the first failed background write
        self._cond = threading.Condition()
        self._pending: RunSnapshot | None = None
        self._busy = False
        self._idle = False  # the writer thread waits for a job (not in its interval wait)
        self._closed = False
        self._thread: threading.Thread | None = None
        self._epoch_json: list[str] = []  # writer-side cache: each epoch serialised once
        self._lock: tuple[int, Path] | None = None  # (fd, lock file) while this writer owns path
        self.bytes_written = 0  # for benchmarks: the write volume
        self._cache_lock = threading.Lock()

    def claim(self) -> str | None:
        """Hold an advisory lock beside the file (``.<name>.lock``) for this writer. When
        another live process holds it, write ``<stem>.pid<PID><suffix>`` instead, and return
        a warning text; None when the path is ours (or locks are not supported here)."""
        try:
            import fcntl
        except ImportError:  # no advisory locks (Windows): no detection
            return None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:  # the write will fail too, and say so
            return None
        for path in (self.path, self.path.with_name(f"{self.path.stem}.pid{os.getpid()}"
                                                   f"{self.path.suffix}")):
            lock = path.with_name(f".{path.name}.lock")
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            except OSError:  # a read-only folder: no detection, the write will say why
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self._lock = (fd, lock)
            if path == self.path:
                return None
            taken, self.path = self.path, path
            return (f"summary_path={str(taken)!r} is being written by another live run; this "
                    f"run writes {str(path)!r} instead")
        return None

    def _release(self) -> None:
        if self._lock is not None:
            fd, lock = self._lock
            self._lock = None
            try:
                lock.unlink()
            except OSError:
                pass
            os.close(fd)

    def submit(self, snap: RunSnapshot) -> None:
        """Ask for a rewrite with ``snap`` (returns at once)."""
        with self._cond:
            self._pending = snap
            self._start()
            if self._idle:  # waiting for a job; in its interval wait it takes this one anyway
                self._cond.notify()

    def _start(self) -> None:
        if self._thread is None and not self._closed:
            self._thread = threading.Thread(target=self._run, name="wattwise-summary",
                                            daemon=True)
            self._thread.start()

    def write_now(self, snap: RunSnapshot) -> None:
        """Write ``snap`` on this thread, after the write in flight (if any); raises on failure.
        The first call also starts the writer thread (so no epoch end waits for that)."""
        with self._cond:
            self._pending = None
            while self._busy:
                self._cond.wait()
            self._start()
        try:
            self._write(snap)
        finally:
            with self._cond:
                self._last_write = time.monotonic()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every requested write is on disk; False if ``timeout_s`` ran out."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._pending is None and not self._busy, timeout=timeout_s
            )

    def close(self) -> None:
        """Stop the writer thread (pending requests are dropped: call write_now first)."""
        with self._cond:
            self._closed = True
            self._pending = None
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10.0)
        self._release()

    def _run(self) -> None:
        while True:
            with self._cond:
                # wait for a job and for the interval since the last write to pass; new submits
                # replace the pending snapshot meanwhile. Only a writer idle past its interval
                # is woken by submit(), so epochs shorter than the interval wake it never
                while True:
                    rest = self._last_write + self.min_interval_s - time.monotonic()
                    if self._pending is not None and (rest <= 0 or self._closed):
                        break
                    if self._pending is None and self._closed:
                        return
                    self._idle = self._pending is None and rest <= 0
                    self._cond.wait(None if self._idle else rest)
                self._idle = False
                job, self._pending, self._busy = self._pending, None, True
            try:
                self._write(job)
            except Exception as e:  # noqa: BLE001 - reported by the tracker, never raised here
                if self.error is None:
                    self.error = e
            finally:
                with self._cond:
                    self._last_write = time.monotonic()
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, snap: RunSnapshot) -> None:
        with self._cache_lock:
            cache = self._epoch_json
            for rec in snap.epochs[len(cache): snap.n_epochs]:
                cache.append(json.dumps(rec.to_dict(), allow_nan=False, default=_json_default))
            epochs = "[" + ",\n  ".join(cache[: snap.n_epochs]) + "]"
        placeholder = f"wattwise-epochs-{id(self)}"
        data = render(snap, epochs=False)
        data["epochs"] = placeholder
        text = _dumps(data).replace(f'"{placeholder}"', epochs, 1)
        _write_text_atomic(self.path, text)
        self.bytes_written += len(text.encode("utf-8")) + 1


def _json_default(obj: object) -> object:
    """Last-resort conversion for values users put in ``hardware``/``metadata``."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        return item()
    return repr(obj)


# --------------------------------------------------------------------------------------------
# reading


def read_summary(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a run summary (schema version 1 or 2) and check its schema version.

    Args:
        path: a JSON file written by :class:`~wattwise.EnergyTracker`.

    Returns:
        The summary as a dict.

    Raises:
        ConfigurationError: when the file is not a wattwise run summary or has a newer schema.
        OSError: when the file cannot be read.
    """
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as e:
            raise ConfigurationError(
                f"read_summary(path={str(path)!r}): not valid JSON ({e}); expected a wattwise "
                "run summary"
            ) from e
    version = data.get("schema_version") if isinstance(data, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise ConfigurationError(
            f"read_summary(path={str(path)!r}): no integer 'schema_version' field; expected a "
            "wattwise run summary written by EnergyTracker"
        )
    if version < 1:
        raise ConfigurationError(
            f"read_summary(path={str(path)!r}): schema_version={version!r} is not a version "
            f"wattwise ever wrote (1 to {SCHEMA_VERSION}); expected a wattwise run summary"
        )
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"read_summary(path={str(path)!r}): schema_version={version!r} is newer than this "
            f"wattwise understands ({SCHEMA_VERSION}); upgrade wattwise"
        )
    result: dict[str, Any] = data
    return result
