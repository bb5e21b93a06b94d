"""Memory hierarchies and the placement of working sets in them (spec section 4).

A hierarchy is an ordered list of levels ``(name, bytes per unit, units, coefficient level)``.
Capacities are exclusive: they add up going up the hierarchy. ``coef_level`` (1..4) says
which energy coefficients (``a1..a4``, ``m1..m4``) an access to this level is charged;
RAM/VRAM is always 4.

Example:
    >>> from wattwise.model.hierarchy import BUTTER_E_CPU, place
    >>> p = place(BUTTER_E_CPU, replicated_bytes=0, distributed_bytes=17408)
    >>> p.level_name, int(p.effective_bytes)
    ('L1', 483)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from wattwise._record import record
from wattwise.errors import ConfigurationError

__all__ = [
    "BUTTER_E_CPU",
    "BUTTER_E_GPU",
    "PRESETS",
    "GiB",
    "Hierarchy",
    "KiB",
    "MemoryLevel",
    "MiB",
    "Placement",
    "place",
]

KiB = 1024
MiB = 1024**2
GiB = 1024**3


@record
class MemoryLevel:
    """One level of a memory hierarchy.

    Attributes:
        name: ``"L1"``, ``"L2"``, ``"L3"``, ``"RAM"`` or ``"VRAM"``.
        bytes_per_unit: capacity of one unit (one core's L1, one socket's L3), in bytes.
        units: how many units share the work (cores, SMs, sockets, GPUs).
        coef_level: energy coefficient index 1..4 (4 = main memory).
        is_cache: False for RAM/VRAM.
        detected: True when the size came from the hardware, False when assumed.
        source: where the numbers come from (free text, e.g. ``"sysfs"``, ``"preset"``).
    """

    name: str
    bytes_per_unit: int
    units: int
    coef_level: int
    is_cache: bool = True
    detected: bool = False
    source: str = ""

    def __post_init__(self) -> None:
        if int(self.bytes_per_unit) <= 0:
            raise ConfigurationError(
                f"MemoryLevel(bytes_per_unit={self.bytes_per_unit!r}) for {self.name!r} must be "
                "a positive number of bytes"
            )
        if int(self.units) <= 0:
            raise ConfigurationError(
                f"MemoryLevel(units={self.units!r}) for {self.name!r} must be a positive int"
            )
        if self.coef_level not in (1, 2, 3, 4):
            raise ConfigurationError(
                f"MemoryLevel(coef_level={self.coef_level!r}) for {self.name!r} must be 1, 2, 3 or 4"
            )

    @property
    def total_bytes(self) -> int:
        """Capacity of all units together, in bytes."""
        return int(self.bytes_per_unit) * int(self.units)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "bytes_per_unit": int(self.bytes_per_unit),
            "units": int(self.units),
            "coef_level": self.coef_level,
            "is_cache": self.is_cache,
            "detected": self.detected,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MemoryLevel:
        """Inverse of :meth:`to_json`."""
        return cls(
            name=str(d["name"]),
            bytes_per_unit=int(d["bytes_per_unit"]),
            units=int(d["units"]),
            coef_level=int(d["coef_level"]),
            is_cache=bool(d.get("is_cache", True)),
            detected=bool(d.get("detected", False)),
            source=str(d.get("source", "")),
        )


@record
class Hierarchy:
    """An ordered memory hierarchy, smallest/fastest level first, main memory last.

    Attributes:
        name: e.g. ``"butter-e-gpu"``, ``"cpu (detected)"``.
        kind: ``"cpu"`` or ``"gpu"`` (selects the coefficient preset).
        levels: the levels.
        notes: what was detected and what was assumed, human-readable.
    """

    name: str
    kind: str
    levels: tuple[MemoryLevel, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.kind not in ("cpu", "gpu"):
            raise ConfigurationError(f"Hierarchy(kind={self.kind!r}) must be 'cpu' or 'gpu'")
        if not self.levels:
            raise ConfigurationError("Hierarchy(levels=()) needs at least one level")
        object.__setattr__(self, "levels", tuple(self.levels))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def caches(self) -> tuple[MemoryLevel, ...]:
        """The cache levels (main memory left out)."""
        return tuple(lv for lv in self.levels if lv.is_cache)

    def cumulative_bytes_per_unit(self, index: int) -> int:
        """Per-unit capacity of levels ``0..index`` together (exclusive caches add up), bytes."""
        return sum(int(lv.bytes_per_unit) for lv in self.levels[: index + 1])

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "name": self.name,
            "kind": self.kind,
            "levels": [lv.to_json() for lv in self.levels],
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Hierarchy:
        """Inverse of :meth:`to_json`."""
        try:
            return cls(
                name=str(d["name"]),
                kind=str(d["kind"]),
                levels=tuple(MemoryLevel.from_json(x) for x in d["levels"]),
                notes=tuple(str(n) for n in d.get("notes", ())),
            )
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, ConfigurationError):
                raise
            raise ConfigurationError(
                f"Hierarchy.from_json: not a hierarchy ({type(e).__name__}: {e}); expected "
                "keys 'name', 'kind', 'levels'"
            ) from e

    def describe(self) -> str:
        """One line per level, units included."""
        out = []
        for lv in self.levels:
            how = "detected" if lv.detected else "assumed"
            out.append(
                f"{lv.name}: {_fmt_bytes(lv.bytes_per_unit)} x {lv.units} unit(s) ({how}"
                + (f", {lv.source}" if lv.source else "")
                + ")"
            )
        return "\n".join(out)


def _fmt_bytes(n: float) -> str:
    n = float(n)
    for unit, div in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= div:
            v = n / div
            return f"{v:.4g} {unit}"
    return f"{n:.0f} B"


@record
class Placement:
    """Where one working set landed (spec section 4), sizes in bytes.

    Attributes:
        level_index: index into ``hierarchy.levels``.
        level_name: that level's name.
        coef_level: that level's coefficient index (1..4).
        cached_bytes: per-unit footprint at that level, ``r + s/units``.
        occupied_bytes: per-unit occupancy after placing this set.
        singular_bytes: total size of the set, ``r + s``.
        singular_occupied_bytes: total occupancy after placing this set.
        effective_bytes: running effective size (previous effective + cached).
    """

    level_index: int
    level_name: str
    coef_level: int
    cached_bytes: float
    occupied_bytes: float
    singular_bytes: float
    singular_occupied_bytes: float
    effective_bytes: float

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "level": self.level_name,
            "level_index": self.level_index,
            "coef_level": self.coef_level,
            "cached_bytes": self.cached_bytes,
            "occupied_bytes": self.occupied_bytes,
            "singular_bytes": self.singular_bytes,
            "singular_occupied_bytes": self.singular_occupied_bytes,
            "effective_bytes": self.effective_bytes,
        }


def place(
    hierarchy: Hierarchy | Sequence[MemoryLevel],
    replicated_bytes: float,
    distributed_bytes: float,
    occupied_bytes: float = 0,
    singular_occupied_bytes: float = 0,
    effective_bytes: float = 0,
) -> Placement:
    """Place a working set with replicated part ``r`` and distributed part ``s``.

    The set goes to the first level (from the bottom) where what is already occupied per unit
    plus its per-unit footprint ``r + s/units`` fits the cumulative per-unit capacity; when it
    does not fit, it spills one level up (occupancy becomes that level's capacity). A set that
    fits nowhere lands in the last level.

    Args:
        hierarchy: the hierarchy (or its levels).
        replicated_bytes: bytes copied to every unit (parameters, gradients), ``r``.
        distributed_bytes: bytes split across units (activations, data), ``s``.
        occupied_bytes: per-unit bytes already occupied.
        singular_occupied_bytes: total bytes already occupied.
        effective_bytes: running effective size, bytes.

    Returns:
        The :class:`Placement`.
    """
    levels = hierarchy.levels if isinstance(hierarchy, Hierarchy) else tuple(hierarchy)
    r, s = float(replicated_bytes), float(distributed_bytes)
    occ, sing_occ, eff = occupied_bytes, singular_occupied_bytes, effective_bytes
    cap = 0
    tot = 0
    for i, lv in enumerate(levels):
        cap += int(lv.bytes_per_unit)
        tot += int(lv.bytes_per_unit) * int(lv.units)
        if cap <= occ:
            continue
        cached = r + s / int(lv.units)
        if occ + cached <= cap or i == len(levels) - 1:
            return Placement(
                level_index=i,
                level_name=lv.name,
                coef_level=lv.coef_level,
                cached_bytes=cached,
                occupied_bytes=occ + cached,
                singular_bytes=r + s,
                singular_occupied_bytes=sing_occ + r + s,
                effective_bytes=eff + cached,
            )
        occ = cap
        sing_occ = tot
    # every level was already full: the set lands in main memory
    lv = levels[-1]
    cached = r + s / int(lv.units)
    return Placement(len(levels) - 1, lv.name, lv.coef_level, cached, occ + cached, r + s,
                     sing_occ + r + s, eff + cached)


BUTTER_E_CPU = Hierarchy(
    name="butter-e-cpu",
    kind="cpu",
    levels=(
        MemoryLevel("L1", 32 * KiB, 36, 1, source="BUTTER-E CPU node (2x Xeon Gold 6154)"),
        MemoryLevel("L2", 1 * MiB, 36, 2, source="BUTTER-E CPU node"),
        MemoryLevel("L3", int(24.75 * MiB), 2, 3, source="BUTTER-E CPU node"),
        MemoryLevel("RAM", 96 * GiB, 1, 4, is_cache=False, source="BUTTER-E CPU node"),
    ),
    notes=("preset: the paper's CPU node (2x Intel Xeon Gold 6154) as its analysis code had it",),
)
"""The BUTTER-E CPU node as the authors' analysis code had it."""

BUTTER_E_GPU = Hierarchy(
    name="butter-e-gpu",
    kind="gpu",
    levels=(
        MemoryLevel("L1", 112 * KiB, 168, 1, source="BUTTER-E GPU node (2x V100)"),
        MemoryLevel("L2", 6 * MiB, 2, 2, source="BUTTER-E GPU node"),
        MemoryLevel("VRAM", 16 * GiB, 2, 4, is_cache=False, source="BUTTER-E GPU node"),
    ),
    notes=(("preset: the paper's GPU node (2x NVIDIA V100) as its analysis code had it; "
            "VRAM is charged the RAM coefficients a4, m4"),),
)
"""The BUTTER-E GPU node as the authors' analysis code had it."""

PRESETS: dict[str, Hierarchy] = {"butter-e-cpu": BUTTER_E_CPU, "butter-e-gpu": BUTTER_E_GPU}
