"""The run-summary JSON file: schema version, atomic writing, reading back.

The schema is documented field by field (with units) in ``docs/summary-schema.md``. A reader
should check ``schema_version``: a change that renames or removes a field bumps it; adding a
field does not.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import uuid
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from wattwise.errors import ConfigurationError

__all__ = ["SCHEMA_VERSION", "SummaryFile", "epoch_json", "read_summary", "write_json_atomic"]

SCHEMA_VERSION = 1
"""Version of the run-summary JSON schema written by :class:`~wattwise.EnergyTracker`."""


def write_json_atomic(path: str | PathLike[str], data: Mapping[str, Any]) -> None:
    """Write ``data`` as JSON to ``path`` atomically.

    The JSON goes to a temporary file in the same folder, is flushed and fsynced, then
    ``os.replace`` puts it in place: a reader (or a crash) sees the old file or the new one,
    never half of one. The parent folder is created if needed.

    Args:
        path: destination file.
        data: JSON-serialisable mapping (NaN and infinity are refused).

    Raises:
        OSError: when the folder or file cannot be written.
        ValueError: when ``data`` holds NaN/infinity or something not JSON-serialisable.
    """
    _write_text_atomic(Path(path), json.dumps(data, indent=1, allow_nan=False, default=_json_default))


def _write_text_atomic(dest: Path, text: str) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
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
    """One run-summary file, rewritten atomically by a background thread after every epoch.

    The training thread hands over the summary's small part (everything but the epoch list) and
    how many epoch records are complete; the writer thread turns them into JSON, joins the
    epoch records (each serialised once, when its epoch ended), writes a temporary file, fsyncs
    and renames it over the summary. Requests coalesce: when the disk is slower than the
    epochs, the writer skips to the newest state, which holds every finished epoch. So the
    training thread never waits on the disk, a crash loses at most the epochs of the write in
    flight, and :meth:`write_now` (at finish) writes synchronously after any write in flight.

    Args:
        path: the summary file.
    """

    def __init__(self, path: str | PathLike[str]) -> None:
        self.path = Path(path)
        self.error: BaseException | None = None  # the first failed background write
        self._cond = threading.Condition()
        self._pending: tuple[dict[str, Any], list[str], int] | None = None
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._placeholder = f"wattwise-epochs-{uuid.uuid4().hex}"

    def submit(self, head: dict[str, Any], epochs_json: list[str], n_epochs: int) -> None:
        """Ask for a rewrite with ``head`` and the first ``n_epochs`` of ``epochs_json``
        (JSON texts of epoch records; the list may grow meanwhile, but must not change)."""
        with self._cond:
            self._pending = (head, epochs_json, n_epochs)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="wattwise-summary", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def write_now(self, head: dict[str, Any], epochs_json: list[str], n_epochs: int) -> None:
        """Write on this thread, after the write in flight (if any); raises on failure."""
        with self._cond:
            self._pending = None
            while self._busy:
                self._cond.wait()
        self._write(head, epochs_json, n_epochs)

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

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._pending is None and not self._closed:
                    self._cond.wait()
                if self._pending is None:
                    return
                job, self._pending, self._busy = self._pending, None, True
            try:
                self._write(*job)
            except Exception as e:  # noqa: BLE001 - reported by the tracker, never raised here
                if self.error is None:
                    self.error = e
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _write(self, head: dict[str, Any], epochs_json: list[str], n_epochs: int) -> None:
        text = json.dumps(
            {**head, "epochs": self._placeholder}, indent=1, allow_nan=False, default=_json_default
        )
        epochs = "[" + ",\n  ".join(epochs_json[:n_epochs]) + "]"
        _write_text_atomic(self.path, text.replace(f'"{self._placeholder}"', epochs, 1))


def epoch_json(record: Mapping[str, Any]) -> str:
    """One epoch record as compact JSON, for :class:`SummaryFile` (NaN/infinity refused)."""
    return json.dumps(record, allow_nan=False, default=_json_default)


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


def read_summary(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a run summary and check its schema version.

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
    if not isinstance(version, int):
        raise ConfigurationError(
            f"read_summary(path={str(path)!r}): no integer 'schema_version' field; expected a "
            "wattwise run summary written by EnergyTracker"
        )
    if version > SCHEMA_VERSION:
        raise ConfigurationError(
            f"read_summary(path={str(path)!r}): schema_version={version!r} is newer than this "
            f"wattwise understands ({SCHEMA_VERSION}); upgrade wattwise"
        )
    result: dict[str, Any] = data
    return result
