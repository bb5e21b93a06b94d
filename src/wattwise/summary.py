"""The run-summary JSON file: schema version, atomic writing, reading back.

The schema is documented field by field (with units) in ``docs/summary-schema.md``. A reader
should check ``schema_version``: a change that renames or removes a field bumps it; adding a
field does not.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from wattwise.errors import ConfigurationError

__all__ = ["SCHEMA_VERSION", "read_summary", "write_json_atomic"]

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
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, allow_nan=False, default=_json_default)
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
