"""NVIDIA GPU energy through NVML (the ``pynvml`` binding from ``nvidia-ml-py``).

The total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``, mJ, Volta and newer) is
read for each GPU this process may use. GPUs without it get a background thread that
integrates ``nvmlDeviceGetPowerUsage`` (mW) over time with the trapezoid rule; those domains
are listed in :attr:`~wattwise.meters.Reading.approximate_domains`. MIG instances report
their parent board (energy is a whole-board value) and :meth:`NvmlMeter.describe` says so.

``pynvml`` is imported lazily, and loads one NVML library per process. ``library_path``
loads another file (a specific driver's library, or a fake one in tests) by assigning
``pynvml.nvmlLib`` before ``nvmlInit``; a different path can be used once every
:class:`NvmlMeter` using the previous one is closed.
"""

from __future__ import annotations

import ctypes
import itertools
import os
import statistics
import threading
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise._warn import warn
from wattwise.errors import ConfigurationError, MeterReadError, MeterUnavailableError, MeterWarning
from wattwise.meters._poller import Poller
from wattwise.meters.base import Meter, Reading, check_seconds

__all__ = ["NvmlMeter", "parse_cuda_visible_devices"]

_LIB_LOCK = threading.Lock()
_lib_path: str | None = None  # the library file our meters loaded; None = pynvml's default
_open_count = 0  # NvmlMeters currently holding an nvmlInit

MIG_NOTE = "MIG: whole-board energy shared with other MIG instances"
DEFAULT_UPDATE_PERIOD_S = 0.1
#: A board's plausible maximum power is its enforced power limit
#: (``nvmlDeviceGetEnforcedPowerLimit``) times this factor: boards briefly draw above it.
POWER_LIMIT_MARGIN = 1.5
#: The plausible maximum power of a board that reports no power limit, in watts: above any
#: single GPU board (H100 SXM 700 W, B200 1000 W).
DEFAULT_MAX_POWER_W = 2000.0


def _import_pynvml() -> Any:
    try:
        import pynvml
    except ImportError as e:
        raise MeterUnavailableError(
            "NvmlMeter: the 'pynvml' module is not installed. "
            "Fix: pip install 'wattwise[nvidia]' (installs nvidia-ml-py)."
        ) from e
    return pynvml


def _acquire(library_path: str | None) -> Any:
    """Load the requested NVML library into pynvml and ``nvmlInit``; return the module."""
    global _lib_path, _open_count
    pynvml = _import_pynvml()
    want = str(Path(library_path).resolve()) if library_path is not None else None
    with _LIB_LOCK:
        if want != _lib_path:
            if _open_count > 0:
                raise MeterUnavailableError(
                    f"NvmlMeter(library_path={library_path!r}): another NvmlMeter in this process "
                    f"uses the NVML library {_lib_path or 'libnvidia-ml.so.1'!r}, and pynvml holds "
                    "one library per process. Fix: close the other NvmlMeter first, or use the "
                    "same library_path."
                )
            if getattr(pynvml, "_nvmlLib_refcount", 0) > 0:
                raise MeterUnavailableError(
                    f"NvmlMeter(library_path={library_path!r}): pynvml was initialised by other "
                    "code in this process with another library; switching would break it. "
                    "Fix: start NVML users with the same library, or leave library_path=None."
                )
            if want is None:
                new_lib = None  # pynvml loads libnvidia-ml.so.1 itself in nvmlInit
            else:
                try:
                    new_lib = ctypes.CDLL(want)
                except OSError as e:
                    raise MeterUnavailableError(
                        f"NvmlMeter(library_path={library_path!r}): cannot load it: {e}. "
                        "Fix: pass the path of libnvidia-ml.so.1 (e.g. "
                        "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1), or None."
                    ) from e
            with pynvml.libLoadLock:
                pynvml.nvmlLib = new_lib
                pynvml._nvmlGetFunctionPointer_cache.clear()
            _lib_path = want
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            code = getattr(e, "value", None)
            if code == pynvml.NVML_ERROR_LIBRARY_NOT_FOUND:
                why = (
                    "no NVML library (libnvidia-ml.so.1) found: no NVIDIA driver on this machine. "
                    "Fix: install the NVIDIA driver, or pass library_path= to the library file."
                )
            elif code == pynvml.NVML_ERROR_DRIVER_NOT_LOADED:
                why = "the NVIDIA driver is not loaded. Fix: load it (nvidia-smi should work)."
            elif code == pynvml.NVML_ERROR_NO_PERMISSION:
                why = "no permission to use NVML. Fix: check /dev/nvidia* permissions."
            else:
                why = f"nvmlInit failed: {e}. Fix: check that nvidia-smi works."
            raise MeterUnavailableError(f"NvmlMeter(library_path={library_path!r}): {why}") from e
        _open_count += 1
    return pynvml


def _release(pynvml: Any) -> None:
    global _lib_path, _open_count
    with _LIB_LOCK:
        if _open_count <= 0:
            return
        _open_count -= 1
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass
        others = getattr(pynvml, "_nvmlLib_refcount", 0)
        if _open_count == 0 and _lib_path is not None and others == 0:
            # leave pynvml as we found it: other code gets the default library again
            with pynvml.libLoadLock:
                pynvml.nvmlLib = None
                pynvml._nvmlGetFunctionPointer_cache.clear()
            _lib_path = None


def parse_cuda_visible_devices(
    value: str | None, uuids: Sequence[str], resolve_mig: Any = None
) -> list[tuple[str, int, str | None]]:
    """Map ``CUDA_VISIBLE_DEVICES`` to physical NVML devices, like the CUDA runtime does.

    Args:
        value: the variable's value; None means unset (every device, in NVML order).
        uuids: the UUID of each physical NVML device, by NVML index.
        resolve_mig: ``resolve_mig(mig_uuid) -> parent GPU UUID or None`` for ``MIG-...``
            entries.

    Returns:
        One ``(entry, nvml_index, mig_uuid or None)`` per logical CUDA device, in logical
        order. Parsing stops at the first invalid, unknown or repeated entry (CUDA does the
        same), so ``"0,-1,1"`` means device 0 only and ``""`` means none.
    """
    if value is None:
        return [(str(i), i, None) for i in range(len(uuids))]
    out: list[tuple[str, int, str | None]] = []
    seen: set[tuple[int, str | None]] = set()
    for raw in value.split(","):
        tok = raw.strip()
        idx: int | None = None
        mig: str | None = None
        if tok.lstrip("-").isdigit():
            n = int(tok)
            idx = n if 0 <= n < len(uuids) else None
        elif tok.startswith("GPU-"):
            matches = [i for i, u in enumerate(uuids) if u.startswith(tok)]
            idx = matches[0] if len(matches) == 1 else None
        elif tok.startswith("MIG-"):
            parent: str | None = None
            if tok.startswith("MIG-GPU-"):  # old format MIG-GPU-<uuid>/<gi>/<ci>
                parent = tok[len("MIG-") :].split("/")[0]
            elif resolve_mig is not None:
                parent = resolve_mig(tok)
            if parent:
                matches = [i for i, u in enumerate(uuids) if u.startswith(parent)]
                idx = matches[0] if len(matches) == 1 else None
                mig = tok
        if idx is None or (idx, mig) in seen:
            break
        seen.add((idx, mig))
        out.append((tok, idx, mig))
    return out


@dataclass
class _Board:
    domain: str
    nvml_index: int
    handle: Any
    uuid: str
    name: str
    logical: list[int] = field(default_factory=list)
    mig_uuids: list[str] = field(default_factory=list)
    approximate: bool = False
    base_mj: int = 0
    max_power_w: float = DEFAULT_MAX_POWER_W
    # power integration state (approximate boards only)
    last_t: float = 0.0
    last_power_w: float = 0.0
    joules: float = 0.0


def _stop_and_release(stop: threading.Event, pynvml: Any, released: list[bool]) -> None:
    stop.set()
    if not released[0]:
        released[0] = True
        _release(pynvml)


class NvmlMeter(Meter):
    """GPU energy in joules per board since opening, from NVML.

    Construction initialises NVML, resolves the devices and reads the first counter values
    (and starts the power-sampling thread when a GPU has no energy counter); :meth:`close`
    undoes it.

    Args:
        devices: logical CUDA device indices (after ``CUDA_VISIBLE_DEVICES``) to measure;
            None (default) = every visible device.
        library_path: a ``libnvidia-ml`` file to load instead of pynvml's default
            ``libnvidia-ml.so.1``.
        power_sample_interval_s: seconds between power samples for GPUs without an energy
            counter (default 0.1).

    Domains are ``gpu:<logical index>``. Two logical devices on the same physical board (MIG
    instances) share one domain, named after the first, so the board is counted once.

    Raises:
        ConfigurationError: bad ``devices`` or ``power_sample_interval_s``.
        MeterUnavailableError: no pynvml, no driver or library, no visible GPU, or no GPU
            with an energy counter or a power reading.

    Example:
        >>> from wattwise.meters import NvmlMeter
        >>> with NvmlMeter(devices=[0]) as meter:  # doctest: +SKIP
        ...     print(meter.read().joules)  # {'gpu:0': 12.345}
    """

    name = "nvml"
    scope = "device"
    estimated = False
    update_period_s = DEFAULT_UPDATE_PERIOD_S

    def __init__(
        self,
        devices: Sequence[int] | None = None,
        library_path: str | os.PathLike[str] | None = None,
        *,
        power_sample_interval_s: float = 0.1,
    ) -> None:
        if devices is not None:
            if isinstance(devices, (str, bytes)) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices
            ):
                raise ConfigurationError(
                    f"NvmlMeter(devices={devices!r}): expected a list of logical CUDA device "
                    "indices (ints >= 0) or None for every visible device. Fix: e.g. devices=[0]."
                )
            if len(set(devices)) != len(devices):
                raise ConfigurationError(
                    f"NvmlMeter(devices={devices!r}): repeated device index. Fix: list each "
                    "device once."
                )
        check_seconds("NvmlMeter(power_sample_interval_s", power_sample_interval_s, "e.g. 0.1")
        self._library_path = None if library_path is None else os.fspath(library_path)
        self._power_interval_s = float(power_sample_interval_s)
        self._lock = threading.Lock()
        self._closed = False
        self._sample_error: BaseException | None = None
        self._poller = Poller("wattwise-nvml-power")
        self._skipped: dict[str, str] = {}
        pynvml = _acquire(self._library_path)
        self._nvml = pynvml
        self._finalizer = weakref.finalize(
            self, _stop_and_release, self._poller.stopped, pynvml, [False]
        )
        try:
            self._boards = self._open_boards(devices)
        except BaseException:
            self._finalizer()
            raise
        self._domains = tuple(b.domain for b in self._boards)
        self._approx = frozenset(b.domain for b in self._boards if b.approximate)
        if self._approx:
            self.update_period_s = max(DEFAULT_UPDATE_PERIOD_S, self._power_interval_s)
            self._poller.start(self._sample_power, self._power_interval_s)

    # opening ---------------------------------------------------------------------------
    def _unavailable(self, why: str) -> MeterUnavailableError:
        return MeterUnavailableError(f"NvmlMeter(library_path={self._library_path!r}): {why}")

    def _open_boards(self, devices: Sequence[int] | None) -> list[_Board]:
        nv = self._nvml
        try:
            self.driver_version: str | None = str(nv.nvmlSystemGetDriverVersion())
        except nv.NVMLError:
            self.driver_version = None
        try:
            count = nv.nvmlDeviceGetCount()
            handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
            uuids = [str(nv.nvmlDeviceGetUUID(h)) for h in handles]
            names = [str(nv.nvmlDeviceGetName(h)) for h in handles]
        except nv.NVMLError as e:
            raise self._unavailable(
                f"cannot list GPUs: {e}. Fix: check that nvidia-smi works."
            ) from e

        def resolve_mig(mig_uuid: str) -> str | None:
            try:
                h = nv.nvmlDeviceGetHandleByUUID(mig_uuid)
                parent = nv.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(h)
                return str(nv.nvmlDeviceGetUUID(parent))
            except nv.NVMLError:
                return None

        cvd = os.environ.get("CUDA_VISIBLE_DEVICES")
        logical = parse_cuda_visible_devices(cvd, uuids, resolve_mig)
        if not logical:
            raise self._unavailable(
                f"no GPU visible to this process ({count} in NVML, "
                f"CUDA_VISIBLE_DEVICES={cvd!r}). Fix: unset or correct CUDA_VISIBLE_DEVICES."
            )
        wanted = list(range(len(logical))) if devices is None else list(devices)
        bad = [d for d in wanted if d >= len(logical)]
        if bad:
            raise ConfigurationError(
                f"NvmlMeter(devices={list(devices or [])!r}): logical device(s) {bad!r} do not "
                f"exist; this process sees {len(logical)} GPU(s) (CUDA_VISIBLE_DEVICES={cvd!r}). "
                f"Fix: use indices 0..{len(logical) - 1}."
            )
        boards = self._group_boards(wanted, logical, handles, uuids, names)
        out = [b for b in boards if self._first_reading(b)]
        for b in out:
            b.max_power_w = self._board_max_power_w(b)
        if not out:
            raise self._unavailable(
                "no selected GPU has an energy counter or a power reading: "
                + "; ".join(f"{d}: {why}" for d, why in self._skipped.items())
                + ". Fix: use a Volta or newer GPU, or another meter (codecarbon)."
            )
        if self._skipped:
            warn(
                "NvmlMeter: not measuring "
                + "; ".join(f"{d} ({why})" for d, why in self._skipped.items()),
                MeterWarning,
            )
        return out

    @staticmethod
    def _group_boards(
        wanted: list[int],
        logical: list[tuple[str, int, str | None]],
        handles: list[Any],
        uuids: list[str],
        names: list[str],
    ) -> list[_Board]:
        """One board per physical GPU behind the wanted logical devices (MIG instances of one
        board share it, named after the first)."""
        boards: dict[int, _Board] = {}
        for li in wanted:
            _entry, idx, mig = logical[li]
            b = boards.get(idx)
            if b is None:
                b = boards[idx] = _Board(
                    domain=f"gpu:{li}",
                    nvml_index=idx,
                    handle=handles[idx],
                    uuid=uuids[idx],
                    name=names[idx],
                )
            b.logical.append(li)
            if mig:
                b.mig_uuids.append(mig)
        return list(boards.values())

    def _first_reading(self, b: _Board) -> bool:
        """Read the board's energy counter (or, without one, its power) for the first time;
        False (and the reason in ``_skipped``) when neither works."""
        nv = self._nvml
        try:
            b.base_mj = int(nv.nvmlDeviceGetTotalEnergyConsumption(b.handle))
            return True
        except nv.NVMLError as e:
            if getattr(e, "value", None) != nv.NVML_ERROR_NOT_SUPPORTED:
                self._skipped[b.domain] = f"energy counter failed: {e}"
                return False
        try:
            b.last_power_w = nv.nvmlDeviceGetPowerUsage(b.handle) / 1000.0
        except nv.NVMLError as e2:
            self._skipped[b.domain] = f"no energy counter (pre-Volta) and no power reading ({e2})"
            return False
        b.approximate = True
        b.last_t = time.monotonic()
        return True

    def _board_max_power_w(self, b: _Board) -> float:
        """The enforced power limit (mW) x :data:`POWER_LIMIT_MARGIN`, in watts, or
        :data:`DEFAULT_MAX_POWER_W` when NVML has none."""
        nv = self._nvml
        try:
            limit_mw = int(nv.nvmlDeviceGetEnforcedPowerLimit(b.handle))
        except nv.NVMLError:
            return DEFAULT_MAX_POWER_W
        return limit_mw / 1000.0 * POWER_LIMIT_MARGIN if limit_mw > 0 else DEFAULT_MAX_POWER_W

    # reading ---------------------------------------------------------------------------
    @property
    def domains(self) -> tuple[str, ...]:
        """``gpu:<logical index>`` per measured board."""
        return self._domains

    def max_power_w(self, domain: str) -> float | None:
        """The board's enforced power limit x :data:`POWER_LIMIT_MARGIN`, in watts, else
        :data:`DEFAULT_MAX_POWER_W`; None for an unknown domain."""
        return next((b.max_power_w for b in self._boards if b.domain == domain), None)

    def _sample_power_locked(self, now: float) -> None:
        nv = self._nvml
        for b in self._boards:
            if not b.approximate:
                continue
            try:
                power_w = nv.nvmlDeviceGetPowerUsage(b.handle) / 1000.0
            except nv.NVMLError as e:
                raise MeterReadError(f"NvmlMeter: power reading of {b.domain} failed: {e}") from e
            b.joules += 0.5 * (b.last_power_w + power_w) * (now - b.last_t)
            b.last_power_w = power_w
            b.last_t = now

    def _sample_power(self) -> None:
        """Take one power sample of every approximate board (the sampling thread's work)."""
        with self._lock:
            if self._closed:
                return
            try:
                self._sample_power_locked(time.monotonic())
            except MeterReadError as e:
                self._sample_error = e
                raise

    def read(self) -> Reading:
        """Read every board now; joules per domain since the meter was opened.

        Raises:
            MeterReadError: an NVML call failed (now or in the sampling thread), or the meter
                is closed.
        """
        if self._closed:
            raise MeterReadError("NvmlMeter.read(): the meter is closed")
        nv = self._nvml
        joules: dict[str, float] = {}
        try:
            for b in self._boards:
                if not b.approximate:
                    energy_mj = nv.nvmlDeviceGetTotalEnergyConsumption(b.handle)
                    joules[b.domain] = (energy_mj - b.base_mj) / 1000.0
        except nv.NVMLError as e:
            raise MeterReadError(f"NvmlMeter: energy reading of {b.domain} failed: {e}") from e
        t = time.monotonic()
        if self._approx:
            with self._lock:
                if self._sample_error is not None:
                    raise MeterReadError(
                        f"NvmlMeter: the power sampling thread failed ({self._sample_error})"
                    ) from self._sample_error
                self._sample_power_locked(t)
                for b in self._boards:
                    if b.approximate:
                        joules[b.domain] = b.joules
            joules = {d: joules[d] for d in self._domains}
        return Reading(joules=joules, time_s=t, estimated=False, approximate_domains=self._approx)

    def measure_update_period(self, duration_s: float = 2.0) -> float | None:
        """Measure how often the first counter board's energy counter changes, in seconds.

        Polls the counter in a tight loop for ``duration_s`` seconds and returns the median
        time between changes (None when it changed fewer than 3 times: an idle GPU may not
        move). Does not change :attr:`update_period_s`.
        """
        nv = self._nvml
        board = next((b for b in self._boards if not b.approximate), None)
        if board is None:
            return None
        changes: list[float] = []
        last = nv.nvmlDeviceGetTotalEnergyConsumption(board.handle)
        end = time.monotonic() + duration_s
        while (now := time.monotonic()) < end:
            v = nv.nvmlDeviceGetTotalEnergyConsumption(board.handle)
            if v != last:
                changes.append(now)
                last = v
        if len(changes) < 3:
            return None
        return float(statistics.median(b - a for a, b in itertools.pairwise(changes)))

    def close(self) -> None:
        """Stop the sampling thread and shut NVML down (for this meter). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._poller.stop()
        self._finalizer()

    def describe(self) -> dict[str, object]:
        """Name, domains, the boards behind them, driver, library and notes."""
        d = super().describe()
        notes: list[str] = []
        if any(b.mig_uuids for b in self._boards):
            notes.append(MIG_NOTE)
        if self._approx:
            notes.append(
                f"approximate: power x time for {', '.join(sorted(self._approx))} (no energy "
                f"counter; power sampled every {self._power_interval_s} s, trapezoid rule)"
            )
        for b in self._boards:
            if len(b.logical) > 1:
                notes.append(
                    f"{b.domain} covers logical devices {b.logical} (same physical board, "
                    "counted once)"
                )
        for dom, why in self._skipped.items():
            notes.append(f"{dom} not measured: {why}")
        d.update(
            devices=[
                {
                    "domain": b.domain,
                    "logical_indices": list(b.logical),
                    "nvml_index": b.nvml_index,
                    "uuid": b.uuid,
                    "name": b.name,
                    "mig_instances": list(b.mig_uuids),
                    "approximate": b.approximate,
                }
                for b in self._boards
            ],
            max_power_w={b.domain: b.max_power_w for b in self._boards},
            approximate_domains=sorted(self._approx),
            driver_version=self.driver_version,
            library_path=self._library_path,
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
            notes=notes,
        )
        return d

    def __repr__(self) -> str:
        return f"NvmlMeter(domains={self._domains!r}, library_path={self._library_path!r})"
