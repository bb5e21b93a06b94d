"""A minimal TensorBoard event-file writer for scalars, in pure Python (no TensorFlow, no protobuf).

TensorBoard reads ``events.out.tfevents.*`` files: a sequence of TFRecords, each holding one
serialized ``tensorflow.Event`` protocol buffer. A TFRecord is::

    uint64 length (little endian)
    uint32 masked_crc32c(length bytes)
    bytes  data[length]
    uint32 masked_crc32c(data)

The ``Event`` and ``Summary`` messages are encoded by hand; only the fields needed for scalars
and text are written (``Event.wall_time`` = 1, ``step`` = 2, ``file_version`` = 3, ``summary`` =
5; ``Summary.value`` = 1; ``Summary.Value.tag`` = 1, ``simple_value`` = 2, ``tensor`` = 8,
``metadata`` = 9).

Example:
    >>> import tempfile
    >>> from wattwise.tbwriter import EventFileWriter
    >>> with EventFileWriter(tempfile.mkdtemp()) as w:
    ...     w.add_scalar("energy_joules", 12.5, step=0)
"""

from __future__ import annotations

import math
import os
import socket
import struct
import time
from os import PathLike
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, BinaryIO

from wattwise.errors import ConfigurationError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["EventFileWriter", "crc32c", "masked_crc32c"]


def _make_crc_table() -> tuple[int, ...]:
    poly = 0x82F63B78  # CRC-32C (Castagnoli), reflected
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _make_crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as used by TFRecord."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked CRC-32C that TFRecord stores (rotate right by 15, add a constant)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= 0xFFFFFFFFFFFFFFFF  # negative int64 -> two's complement, like protobuf
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_delimited(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _event(wall_time_s: float, step: int, *, file_version: str | None = None,
           summary: bytes | None = None) -> bytes:
    msg = _key(1, 1) + struct.pack("<d", wall_time_s) + _key(2, 0) + _varint(step)
    if file_version is not None:
        msg += _len_delimited(3, file_version.encode("utf-8"))
    if summary is not None:
        msg += _len_delimited(5, summary)
    return msg


def _scalar_summary(tag: str, value: float) -> bytes:
    val = _len_delimited(1, tag.encode("utf-8")) + _key(2, 5) + struct.pack("<f", value)
    return _len_delimited(1, val)


def _text_summary(tag: str, text: str) -> bytes:
    """A ``Summary`` with one value for TensorBoard's text plugin: ``metadata`` (9) naming the
    plugin ``"text"``, ``tensor`` (8) a scalar ``DT_STRING`` (dtype 1 = 7, ``string_val`` 8)."""
    metadata = _len_delimited(1, _len_delimited(1, b"text"))  # SummaryMetadata.plugin_data.plugin_name
    tensor = _key(1, 0) + _varint(7) + _len_delimited(2, b"") + _len_delimited(8, text.encode("utf-8"))
    val = _len_delimited(1, tag.encode("utf-8")) + _len_delimited(9, metadata) + _len_delimited(8, tensor)
    return _len_delimited(1, val)


def _is_int(value: object, *, minimum: int) -> bool:
    """True for an int (not a bool) >= ``minimum``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return (header + struct.pack("<I", masked_crc32c(header)) + data
            + struct.pack("<I", masked_crc32c(data)))


class EventFileWriter:
    """Writes scalar (and text) summaries to one TensorBoard event file, without TensorFlow.

    The file ``events.out.tfevents.<time>.<host>.<pid>.wattwise`` is created in ``log_dir``
    (made if missing) at the first flush, so constructing a writer has no side effect on disk.

    Args:
        log_dir: directory for the event file (a TensorBoard run directory).
        flush_every: records buffered before an automatic flush (default 1: every scalar is
            on disk at once; these files get a few records per epoch).

    Raises:
        ConfigurationError: if ``log_dir`` is not a path or ``flush_every`` is not an int >= 1.
    """

    def __init__(self, log_dir: str | PathLike[str], *, flush_every: int = 1) -> None:
        if not isinstance(log_dir, (str, PathLike)) or not str(log_dir):
            raise ConfigurationError(
                f"EventFileWriter(log_dir={log_dir!r}): expected a directory path (str or "
                "os.PathLike), e.g. 'runs/exp1'"
            )
        if not _is_int(flush_every, minimum=1):
            raise ConfigurationError(
                f"EventFileWriter(flush_every={flush_every!r}): expected an int >= 1"
            )
        self.log_dir = Path(log_dir)
        self._flush_every = flush_every
        self._buffer: list[bytes] = []
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._closed = False

    @property
    def path(self) -> Path | None:
        """The event file, once something was written (None before)."""
        return self._path

    def _open(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        name = (f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
                f"{os.getpid()}.wattwise")
        path = self.log_dir / name
        n = 1
        while path.exists():  # two writers in one second in one directory
            path = self.log_dir / f"{name}.{n}"
            n += 1
        self._path = path
        self._file = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._file.write(_record(_event(time.time(), 0, file_version="brain.Event:2")))

    def add_scalar(self, tag: str, value: float, step: int, wall_time_s: float | None = None) -> None:
        """Record ``value`` under ``tag`` at ``step``.

        Args:
            tag: the scalar's name in TensorBoard (e.g. ``"energy_joules"``).
            value: the value (stored as float32, like TensorBoard's own writers).
            step: the x-axis value (epoch or global step), an int >= 0.
            wall_time_s: Unix time of the event in seconds; default now.

        Raises:
            ConfigurationError: on an empty tag, a non-finite or non-numeric value, a bad step.
            ValueError: if the writer was closed.
        """
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(f"EventFileWriter.add_scalar(tag={tag!r}): expected a non-empty str")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigurationError(
                f"EventFileWriter.add_scalar(tag={tag!r}, value={value!r}): expected a finite "
                "number (unknown values are not written, never written as 0)"
            )
        if not _is_int(step, minimum=0):
            raise ConfigurationError(
                f"EventFileWriter.add_scalar(tag={tag!r}, step={step!r}): expected an int >= 0"
            )
        if self._closed:
            raise ValueError(f"EventFileWriter({str(self.log_dir)!r}) is closed")
        wall = time.time() if wall_time_s is None else float(wall_time_s)
        self._buffer.append(_record(_event(wall, step, summary=_scalar_summary(tag, float(value)))))
        if len(self._buffer) >= self._flush_every:
            self.flush()

    def add_text(self, tag: str, text: str, step: int = 0,
                 wall_time_s: float | None = None) -> None:
        """Record ``text`` (Markdown) under ``tag`` at ``step``, for TensorBoard's Text tab.

        Args:
            tag: the entry's name (e.g. ``"wattwise/measurement"``).
            text: the text, Markdown as TensorBoard renders it.
            step: the x-axis value, an int >= 0 (default 0).
            wall_time_s: Unix time of the event in seconds; default now.

        Raises:
            ConfigurationError: on an empty tag, a text that is not a str, a bad step.
            ValueError: if the writer was closed.
        """
        if not isinstance(tag, str) or not tag:
            raise ConfigurationError(f"EventFileWriter.add_text(tag={tag!r}): expected a non-empty str")
        if not isinstance(text, str):
            raise ConfigurationError(f"EventFileWriter.add_text(tag={tag!r}, text={text!r}): "
                                     "expected a str")
        if not _is_int(step, minimum=0):
            raise ConfigurationError(
                f"EventFileWriter.add_text(tag={tag!r}, step={step!r}): expected an int >= 0")
        if self._closed:
            raise ValueError(f"EventFileWriter({str(self.log_dir)!r}) is closed")
        wall = time.time() if wall_time_s is None else float(wall_time_s)
        self._buffer.append(_record(_event(wall, step, summary=_text_summary(tag, text))))
        if len(self._buffer) >= self._flush_every:
            self.flush()

    def flush(self) -> None:
        """Write buffered records to disk."""
        if not self._buffer:
            return
        if self._file is None:
            self._open()
        f = self._file
        assert f is not None
        f.write(b"".join(self._buffer))
        f.flush()
        self._buffer.clear()

    def close(self) -> None:
        """Flush and close the file. Idempotent."""
        if self._closed:
            return
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
