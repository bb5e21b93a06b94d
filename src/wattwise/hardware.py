"""Hardware discovery for the energy model: CPU caches from sysfs, GPU caches from torch.

:func:`detect_hierarchy` returns a :class:`~wattwise.model.hierarchy.Hierarchy` whose levels
say whether each size was detected or assumed. Every source is injectable (``sysfs_root``,
``meminfo_path``, ``gpu_properties``) so tests use real files in a temporary folder.

Example:
    >>> from wattwise.hardware import detect_hierarchy
    >>> h = detect_hierarchy("butter-e-gpu")
    >>> [lv.name for lv in h.levels]
    ['L1', 'L2', 'VRAM']
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from wattwise._warn import warn
from wattwise.errors import ConfigurationError, WattwiseWarning
from wattwise.model.hierarchy import PRESETS, GiB, Hierarchy, KiB, MemoryLevel, MiB

__all__ = [
    "GPU_L1_PER_SM_KIB",
    "HARDWARE_CHOICES",
    "apply_overrides",
    "cpu_hierarchy",
    "detect_hierarchy",
    "gpu_hierarchy",
    "parse_size",
]

HARDWARE_CHOICES: tuple[str, ...] = ("auto", "cpu", "gpu", "butter-e-cpu", "butter-e-gpu")

GPU_L1_PER_SM_KIB: dict[tuple[int, int], int] = {
    (6, 0): 64,   # P100: shared memory per SM (L1 24 KiB separate)
    (6, 1): 96,
    (7, 0): 112,  # V100, as the BUTTER-E analysis had it (128 KiB unified L1/shared)
    (7, 2): 128,
    (7, 5): 96,   # Turing
    (8, 0): 192,  # A100
    (8, 6): 128,  # GA10x
    (8, 7): 192,  # Orin
    (8, 9): 128,  # Ada
    (9, 0): 256,  # H100/H200
    (10, 0): 256,  # B200
    (12, 0): 128,
}
"""Unified L1/shared-memory capacity per SM in KiB, by CUDA compute capability (assumed
from vendor documentation; the driver does not report it)."""

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMG]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Parse a sysfs cache size (``"48K"``, ``"32M"``, ``"1024"``) into bytes."""
    m = _SIZE_RE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    mult = {"": 1, "K": KiB, "M": MiB, "G": GiB}[m.group(2).upper()]
    return int(m.group(1)) * mult


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ram_bytes(meminfo_path: str | os.PathLike[str] | None) -> int | None:
    if meminfo_path is None:
        return None
    text = _read(Path(meminfo_path))
    if text is None:
        return None
    m = re.search(r"^MemTotal:\s+(\d+)\s*kB", text, re.MULTILINE)
    return int(m.group(1)) * 1024 if m else None


def cpu_hierarchy(
    sysfs_root: str | os.PathLike[str] = "/sys",
    meminfo_path: str | os.PathLike[str] | None = "/proc/meminfo",
) -> Hierarchy:
    """The CPU cache hierarchy from ``<sysfs_root>/devices/system/cpu/cpu*/cache/index*``.

    Data and Unified caches only (Instruction caches left out). A level's units are the
    distinct ``shared_cpu_list`` groups (one per core for L1/L2, one per socket or CCX for
    L3). RAM from ``MemTotal`` in ``meminfo_path``.

    Raises:
        ConfigurationError: no cache information under ``sysfs_root`` (the message says how
            to choose a preset instead).
    """
    base = Path(sysfs_root) / "devices" / "system" / "cpu"
    groups: dict[int, dict[str, int]] = {}
    cpus = sorted(p for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit())
    for cpu in cpus:
        for idx in sorted((cpu / "cache").glob("index[0-9]*")):
            typ = _read(idx / "type")
            lvl = _read(idx / "level")
            size = _read(idx / "size")
            shared = _read(idx / "shared_cpu_list") or cpu.name[3:]
            if typ not in ("Data", "Unified") or not lvl or not size or not lvl.isdigit():
                continue
            try:
                nbytes = parse_size(size)
            except ValueError:
                continue
            groups.setdefault(int(lvl), {})[shared] = nbytes
    if not groups:
        raise ConfigurationError(
            f"hardware='cpu': no CPU cache information under {str(base)!r} "
            "(cpu*/cache/index*/{level,type,size,shared_cpu_list}); pass "
            "hardware='butter-e-cpu' or explicit cache sizes (--cache L1=32K ...)"
        )
    levels = []
    for level in sorted(groups):
        sizes = groups[level]
        levels.append(MemoryLevel(
            f"L{level}", max(sizes.values()), len(sizes), min(level, 3), True, True,
            f"sysfs: {len(sizes)} distinct shared_cpu_list group(s)",
        ))
    notes = [f"CPU caches detected from sysfs ({len(cpus)} CPU(s)): "
             + ", ".join(f"{lv.name} {lv.bytes_per_unit // KiB} KiB x {lv.units}" for lv in levels)]
    ram = _ram_bytes(meminfo_path)
    if ram is None:
        ram = 16 * GiB
        notes.append("RAM size unknown (no MemTotal); assumed 16 GiB")
        levels.append(MemoryLevel("RAM", ram, 1, 4, False, False, "assumed"))
    else:
        levels.append(MemoryLevel("RAM", ram, 1, 4, False, True, "MemTotal"))
    return Hierarchy("cpu (detected)", "cpu", tuple(levels), tuple(notes))


def gpu_hierarchy(gpu_properties: Any | None = None, *, device: int = 0, n_gpus: int = 1) -> Hierarchy:
    """The GPU hierarchy: L1 per SM (table, assumed), L2 and VRAM (detected).

    Args:
        gpu_properties: an object with ``major``, ``minor``, ``multi_processor_count``,
            ``L2_cache_size`` (bytes), ``total_memory`` (bytes) and ``name`` — default
            ``torch.cuda.get_device_properties(device)``.
        device: CUDA device index when properties are read from torch.
        n_gpus: GPUs sharing the work (data parallel), multiplies the units.

    Raises:
        ConfigurationError: no CUDA GPU visible (the message says what to pass instead).
    """
    if gpu_properties is None:
        try:
            import torch
        except ImportError as e:
            raise ConfigurationError(
                "hardware='gpu' needs torch with CUDA to read the GPU's caches; install torch "
                "or pass hardware='butter-e-gpu'"
            ) from e
        if not torch.cuda.is_available():
            raise ConfigurationError(
                "hardware='gpu': torch sees no CUDA GPU (torch.cuda.is_available() is False); "
                "use hardware='cpu', 'auto' or 'butter-e-gpu'"
            )
        gpu_properties = torch.cuda.get_device_properties(device)
    p = gpu_properties
    cc = (int(p.major), int(p.minor))
    sms = int(p.multi_processor_count)
    notes = []
    if cc in GPU_L1_PER_SM_KIB:
        l1 = GPU_L1_PER_SM_KIB[cc] * KiB
        notes.append(f"GPU L1 per SM assumed from the compute-capability table (sm_{cc[0]}{cc[1]}: "
                     f"{l1 // KiB} KiB)")
    else:
        l1 = 128 * KiB
        notes.append(f"GPU compute capability {cc} not in the L1 table; assumed 128 KiB per SM")
    l2 = int(getattr(p, "L2_cache_size", 0) or 0)
    l2_detected = l2 > 0
    if not l2_detected:
        l2 = 6 * MiB
        notes.append("GPU L2 size not reported; assumed 6 MiB")
    name = str(getattr(p, "name", "GPU"))
    levels = (
        MemoryLevel("L1", l1, sms * n_gpus, 1, True, False, f"table, {sms} SMs detected"),
        MemoryLevel("L2", l2, n_gpus, 2, True, l2_detected, "torch.cuda.get_device_properties"),
        MemoryLevel("VRAM", int(p.total_memory), n_gpus, 4, False, True,
                    "torch.cuda.get_device_properties"),
    )
    notes.insert(0, f"GPU detected: {name} x {n_gpus}, {sms} SMs, L2 {l2 // KiB} KiB")
    return Hierarchy(f"gpu (detected: {name})", "gpu", levels, tuple(notes))


def _gpu_present() -> bool:
    if "torch" in __import__("sys").modules:
        import torch

        return bool(torch.cuda.is_available())
    if not (Path("/proc/driver/nvidia").exists() or Path("/dev/nvidia0").exists()):
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def apply_overrides(h: Hierarchy, overrides: Mapping[str, Any]) -> Hierarchy:
    """Replace level sizes: ``{"L2": 2 * MiB}`` or ``{"L2": (2 * MiB, units)}``; new level
    names are inserted before main memory. Overridden levels are marked as user-given."""
    levels = list(h.levels)
    notes = list(h.notes)
    for name, val in overrides.items():
        size, units = (val if isinstance(val, (tuple, list)) else (val, None))
        try:
            size = parse_size(size) if isinstance(size, str) else int(size)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"hardware override {name}={val!r}: expected bytes (int or '32K'/'2M') "
                "optionally with units, e.g. (2097152, 4)"
            ) from None
        for i, lv in enumerate(levels):
            if lv.name.upper() == str(name).upper():
                levels[i] = replace(lv, bytes_per_unit=size,
                                    units=int(units) if units is not None else lv.units,
                                    detected=False, source="user override")
                break
        else:
            m = re.fullmatch(r"L(\d)", str(name).upper())
            if not m:
                raise ConfigurationError(
                    f"hardware override {name!r}: unknown level; expected one of "
                    f"{[lv.name for lv in levels]} or L1..L4"
                )
            lvl = int(m.group(1))
            new = MemoryLevel(f"L{lvl}", size, int(units or 1), min(lvl, 3), True, False,
                              "user override")
            pos = next((i for i, lv in enumerate(levels)
                        if not lv.is_cache or (lv.name.startswith("L") and int(lv.name[1:]) > lvl)),
                       len(levels))
            levels.insert(pos, new)
        notes.append(f"{name} set by the user to {size} bytes" + (f" x {units}" if units else ""))
    return replace(h, levels=tuple(levels), notes=tuple(notes))


def detect_hierarchy(
    hardware: str | Hierarchy = "auto",
    *,
    sysfs_root: str | os.PathLike[str] = "/sys",
    meminfo_path: str | os.PathLike[str] | None = "/proc/meminfo",
    gpu_properties: Any | None = None,
    device: int = 0,
    n_gpus: int = 1,
    overrides: Mapping[str, Any] | None = None,
) -> Hierarchy:
    """The memory hierarchy to use for the energy model.

    Args:
        hardware: ``"auto"`` (GPU if CUDA is visible, else CPU; falls back to the paper's
            preset with a warning when nothing can be read), ``"cpu"``, ``"gpu"``,
            ``"butter-e-cpu"``, ``"butter-e-gpu"``, or a :class:`Hierarchy` (returned as is).
        sysfs_root: root of sysfs for CPU caches.
        meminfo_path: ``/proc/meminfo`` for the RAM size (None: RAM assumed).
        gpu_properties: CUDA device properties (default read from torch).
        device: CUDA device index.
        n_gpus: GPUs used together (units of L2/VRAM).
        overrides: level sizes given by the user (see :func:`apply_overrides`).

    Raises:
        ConfigurationError: unknown ``hardware``, or ``"cpu"``/``"gpu"`` asked for by name and
            not readable here.
    """
    if isinstance(hardware, Hierarchy):
        h = hardware
    elif hardware in PRESETS:
        h = PRESETS[hardware]
    elif hardware == "cpu":
        h = cpu_hierarchy(sysfs_root, meminfo_path)
    elif hardware == "gpu":
        h = gpu_hierarchy(gpu_properties, device=device, n_gpus=n_gpus)
    elif hardware == "auto":
        if gpu_properties is not None or _gpu_present():
            h = gpu_hierarchy(gpu_properties, device=device, n_gpus=n_gpus)
        else:
            try:
                h = cpu_hierarchy(sysfs_root, meminfo_path)
            except ConfigurationError as e:
                warn(
                    f"wattwise: could not detect the CPU caches ({e}); using the paper's CPU "
                    "node (butter-e-cpu) as an assumption", WattwiseWarning)
                h = replace(PRESETS["butter-e-cpu"], notes=PRESETS["butter-e-cpu"].notes + (
                    "CPU caches could not be detected; the paper's CPU node is assumed",))
    else:
        raise ConfigurationError(
            f"hardware={hardware!r}: expected one of {', '.join(HARDWARE_CHOICES)} or a Hierarchy"
        )
    if overrides:
        h = apply_overrides(h, overrides)
    return h
