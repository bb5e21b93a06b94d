"""Cache-aware sizing advice (spec section 7).

For each cache level, the per-unit footprint the judged working set (the backward set ``b`` by
default) would have there — what the inter-layer sets already occupy plus ``r + s/units`` —
divided by that level's cumulative per-unit capacity is the ratio ``ρ``. The network is *near*
a cache boundary when ``1 ≤ ρ ≤ 2`` for some level (it fills or just spills it) and *far*
otherwise; the paper found energy-to-loss lowest near such a boundary. When far, the advice
gives the width scaling (and resulting NTP) that brings ``ρ`` into the nearest band below and
above, each with the model's predicted joules per training sample (an estimate).

Example:
    >>> from wattwise.model.advise import advise
    >>> from wattwise.model.working_sets import mlp_working_sets
    >>> from wattwise.model.hierarchy import BUTTER_E_CPU
    >>> a = advise(mlp_working_sets([512, 512, 10], 784, 256), BUTTER_E_CPU)
    >>> a.far, [o.direction for o in a.options]
    (True, ['shrink', 'grow'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from wattwise.errors import ConfigurationError
from wattwise.model.coefficients import Coefficients, preset
from wattwise.model.energy import (
    ModelOptions,
    PassFeatures,
    joules_per_sample,
    pass_features,
    predict,
)
from wattwise.model.hierarchy import Hierarchy, _fmt_bytes
from wattwise.model.working_sets import WorkingSet, WorkingSets, mlp_working_sets

__all__ = [
    "Advice",
    "LevelRatio",
    "ResizeOption",
    "advice_from_widths",
    "advise",
    "footprints",
    "scale_working_sets",
]

FITTED_ON_MLPS = (
    "the coefficients were fitted on dense MLPs (BUTTER-E); for other layer types the "
    "prediction is a rough estimate"
)


@dataclass(frozen=True)
class LevelRatio:
    """The judged set against one cache level.

    Attributes:
        level: level name.
        capacity_bytes: cumulative per-unit capacity up to this level, bytes.
        footprint_bytes: per-unit footprint of the set at this level, bytes.
        ratio: ``footprint / capacity``.
        near: ``band[0] <= ratio <= band[1]``.
    """

    level: str
    capacity_bytes: int
    footprint_bytes: float
    ratio: float
    near: bool

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"level": self.level, "capacity_bytes": self.capacity_bytes,
                "footprint_bytes": self.footprint_bytes, "ratio": self.ratio, "near": self.near}


@dataclass(frozen=True)
class ResizeOption:
    """One way to resize the network into a band.

    Attributes:
        direction: ``"shrink"`` or ``"grow"``.
        level: the cache level whose band it targets.
        width_scale: factor applied to the hidden widths (approximate for non-MLP models).
        ntp: resulting number of trainable parameters.
        widths: resulting widths for an MLP, else None.
        ratio: resulting ``ρ`` at ``level``.
        in_band: whether ``ρ`` lands in the band (width rounding can miss it).
        joules_per_sample: predicted training joules per sample (estimate).
    """

    direction: str
    level: str
    width_scale: float
    ntp: int
    widths: tuple[int, ...] | None
    ratio: float
    in_band: bool
    joules_per_sample: float

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "direction": self.direction, "level": self.level, "width_scale": self.width_scale,
            "ntp": self.ntp, "widths": None if self.widths is None else list(self.widths),
            "ratio": self.ratio, "in_band": self.in_band,
            "estimated_joules_per_sample": self.joules_per_sample,
        }


@dataclass(frozen=True)
class Advice:
    """Sizing advice for one network, batch size and machine. All energies are estimates.

    Attributes:
        far: True when the judged set is far from every cache boundary.
        set_name: the judged set (``"b"`` or ``"f"``).
        band: the near band ``(low, high)`` of ratios.
        levels: the ratio per cache level.
        options: resize options (empty when near).
        working_sets: the working sets.
        hierarchy: the memory hierarchy.
        features: per-pass model features (what a refit needs).
        coefficients: the coefficients used.
        joules_per_sample: predicted training joules per sample (estimate).
        n_samples: training samples per epoch, when known.
        notes: caveats (what was measured vs derived, what was assumed).
    """

    far: bool
    set_name: str
    band: tuple[float, float]
    levels: tuple[LevelRatio, ...]
    options: tuple[ResizeOption, ...]
    working_sets: WorkingSets
    hierarchy: Hierarchy
    features: PassFeatures
    coefficients: Coefficients
    joules_per_sample: float
    n_samples: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def near(self) -> bool:
        """Not :attr:`far`."""
        return not self.far

    @property
    def joules_per_epoch(self) -> float | None:
        """Predicted training joules per epoch (estimate), when ``n_samples`` is known."""
        if self.n_samples is None:
            return None
        batches = math.ceil(self.n_samples / self.working_sets.batch_size)
        return batches * predict(self.features.train_step, self.coefficients)

    def to_json(self) -> dict[str, Any]:
        """JSON-serialisable form: verdict, ratios, options, and everything needed to refit
        (working sets, hierarchy, per-pass features, options, coefficients)."""
        return {
            "format": "wattwise-advice/1",
            "far": self.far,
            "set": self.set_name,
            "band": list(self.band),
            "levels": [lv.to_json() for lv in self.levels],
            "options": [o.to_json() for o in self.options],
            "estimated_joules_per_sample": self.joules_per_sample,
            "estimated_joules_per_epoch": self.joules_per_epoch,
            "n_samples": self.n_samples,
            "batch_size": self.working_sets.batch_size,
            "working_sets": self.working_sets.to_json(),
            "placements": self.features.placements.to_json(),
            "hierarchy": self.hierarchy.to_json(),
            "features": self.features.to_json(),
            "coefficients": self.coefficients.to_json(),
            "notes": list(self.notes),
            "text": self.text(),
        }

    def text(self) -> str:
        """Readable multi-line advice, units everywhere."""
        ws = self.working_sets
        s = ws.backward if self.set_name == "b" else ws.forward
        lines = ["wattwise sizing advice (BUTTER-E energy model; energies are estimates)"]
        name, kind = self.hierarchy.name, self.hierarchy.kind
        lines.append(f"hardware: {name}" if name.startswith(kind) else f"hardware: {name} ({kind})")
        for lv in self.hierarchy.levels:
            how = "detected" if lv.detected else "assumed"
            lines.append(f"  {lv.name}: {_fmt_bytes(lv.bytes_per_unit)} x {lv.units} unit(s), {how}")
        if ws.widths is not None:
            lines.append(f"network: Dense widths {list(ws.widths)} (input {ws.n_in}), "
                         f"NTP {ws.ntp:,}, batch {ws.batch_size}")
        else:
            lines.append(f"network: {ws.depth} layers ({ws.source}), NTP {ws.ntp:,}, batch {ws.batch_size}")
        name = "backward" if self.set_name == "b" else "forward"
        lines.append(
            f"{name} working set {self.set_name}: {_fmt_bytes(s.total_bytes)} "
            f"({_fmt_bytes(s.replicated_bytes)} replicated per unit, "
            f"{_fmt_bytes(s.distributed_bytes)} distributed)"
        )
        for lr in self.levels:
            tag = "NEAR" if lr.near else "far"
            lines.append(
                f"  vs {lr.level}: footprint {_fmt_bytes(lr.footprint_bytes)} per unit / capacity "
                f"{_fmt_bytes(lr.capacity_bytes)} = {lr.ratio:.3g}x  {tag}"
            )
        lo, hi = self.band
        if self.far:
            lines.append(f"verdict: FAR from every cache boundary (near = {lo:g}x-{hi:g}x of a "
                         "level's capacity, where the paper found training energy lowest)")
        else:
            near = ", ".join(lr.level for lr in self.levels if lr.near)
            lines.append(f"verdict: near a cache boundary ({near}); no resize suggested")
        lines.append(f"predicted training energy: {_fmt_j(self.joules_per_sample)} per sample (estimate)")
        if self.joules_per_epoch is not None:
            lines.append(f"predicted training energy: {_fmt_j(self.joules_per_epoch)} per epoch of "
                         f"{self.n_samples:,} samples (estimate)")
        for o in self.options:
            w = f" widths {list(o.widths)}," if o.widths is not None else ""
            lines.append(
                f"  option: {o.direction} widths x{o.width_scale:.3g} ->{w} NTP {o.ntp:,}, "
                f"{self.set_name} at {o.ratio:.3g}x {o.level}"
                + ("" if o.in_band else " (rounding misses the band)")
                + f", {_fmt_j(o.joules_per_sample)} per sample (estimate)"
            )
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)


def _fmt_j(j: float) -> str:
    a = abs(j)
    if a >= 1e3:
        return f"{j / 1e3:.4g} kJ"
    if a >= 1:
        return f"{j:.4g} J"
    if a >= 1e-3:
        return f"{j * 1e3:.4g} mJ"
    return f"{j * 1e6:.4g} uJ"


def footprints(ws: WorkingSets, hierarchy: Hierarchy, set_name: str = "b",
               band: tuple[float, float] = (1.0, 2.0)) -> tuple[LevelRatio, ...]:
    """Ratio of the judged set's per-unit footprint to each cache level's capacity."""
    from wattwise.model.energy import place_working_sets

    pl = place_working_sets(ws, hierarchy)
    s: WorkingSet = ws.backward if set_name == "b" else ws.forward
    occ = pl.start_occupied_bytes
    out = []
    for i, lv in enumerate(hierarchy.levels):
        if not lv.is_cache:
            continue
        cap = hierarchy.cumulative_bytes_per_unit(i)
        fp = occ + s.replicated_bytes + s.distributed_bytes / lv.units
        r = fp / cap
        out.append(LevelRatio(lv.name, cap, fp, r, band[0] <= r <= band[1]))
    return tuple(out)


def scale_working_sets(ws: WorkingSets, scale: float) -> WorkingSets:
    """The working sets of the same network with its hidden widths scaled by ``scale``.

    MLPs are rebuilt exactly (widths ``max(1, round(w·scale))``, output width kept, dataset
    set kept). Other models are scaled approximately: parameters and operations by
    ``scale²``, activations by ``scale``.
    """
    if ws.widths is not None and ws.n_in is not None:
        widths = [max(1, round(w * scale)) for w in ws.widths[:-1]] + [ws.widths[-1]]
        new = mlp_working_sets(widths, ws.n_in, ws.batch_size, element_bytes=ws.element_bytes)
        opt_factor = ws.backward.replicated_bytes / max(2 * ws.element_bytes * ws.ntp, 1)
        b = WorkingSet("b", new.backward.replicated_bytes * opt_factor, new.backward.distributed_bytes)
        return replace(new, backward=b, dataset=ws.dataset, source=ws.source,
                       measured=ws.measured, notes=ws.notes)
    s2 = scale * scale
    ts = tuple(WorkingSet(t.name, t.replicated_bytes * s2, t.distributed_bytes * scale)
               for t in ws.inter_layer)
    return replace(
        ws,
        inter_layer=ts,
        forward=WorkingSet("f", ws.forward.replicated_bytes * s2, ws.forward.distributed_bytes * scale),
        backward=WorkingSet("b", ws.backward.replicated_bytes * s2, ws.backward.distributed_bytes * scale),
        ops_forward=ws.ops_forward * s2,
        ops_backward=ws.ops_backward * s2,
        ntp=max(1, round(ws.ntp * s2)),
    )


def _search_scale(
    ws: WorkingSets, hierarchy: Hierarchy, set_name: str, level_index: int, target: float,
    band: tuple[float, float],
) -> tuple[float, WorkingSets, float] | None:
    def ratio(w: WorkingSets) -> float:
        return next(r.ratio for r in footprints(w, hierarchy, set_name, band)
                    if r.level == hierarchy.levels[level_index].name)

    lo, hi = math.log(1e-4), math.log(1e4)
    for _ in range(60):
        mid = (lo + hi) / 2
        if ratio(scale_working_sets(ws, math.exp(mid))) < target:
            lo = mid
        else:
            hi = mid
    best: tuple[float, WorkingSets, float] | None = None
    for cand in (lo, hi):
        w = scale_working_sets(ws, math.exp(cand))
        r = ratio(w)
        if best is None or abs(r - target) < abs(best[2] - target):
            best = (math.exp(cand), w, r)
    if best is None or not (band[0] * 0.5 <= best[2] <= band[1] * 2):
        return None  # unreachable by scaling (e.g. widths already 1)
    return best


def advise(
    ws: WorkingSets,
    hierarchy: Hierarchy,
    coefficients: Coefficients | None = None,
    *,
    band: tuple[float, float] = (1.0, 2.0),
    set_name: str = "b",
    options: ModelOptions | None = None,
    n_samples: int | None = None,
    notes: tuple[str, ...] = (),
) -> Advice:
    """Sizing advice for working sets ``ws`` on ``hierarchy``.

    Args:
        ws: the working sets (from :func:`~wattwise.model.working_sets.mlp_working_sets` or
            measured by :mod:`wattwise.introspect`).
        hierarchy: the memory hierarchy.
        coefficients: default the paper's preset for ``hierarchy.kind``.
        band: ``(low, high)`` ratio band counted as near a boundary (default 1x-2x).
        set_name: the set to judge, ``"b"`` (backward, default) or ``"f"`` (forward).
        options: model options.
        n_samples: training samples per epoch, for the per-epoch estimate.
        notes: extra caveats to carry (e.g. what hardware was assumed).

    Returns:
        :class:`Advice`.
    """
    if set_name not in ("b", "f"):
        raise ConfigurationError(f"advise(set_name={set_name!r}) must be 'b' or 'f'")
    if not (len(band) == 2 and 0 < band[0] < band[1]):
        raise ConfigurationError(f"advise(band={band!r}) must be (low, high) with 0 < low < high")
    if not hierarchy.caches:
        raise ConfigurationError(f"advise: hierarchy {hierarchy.name!r} has no cache level")
    if coefficients is None:
        coefficients = preset(hierarchy.kind)
    levels = footprints(ws, hierarchy, set_name, band)
    far = not any(lr.near for lr in levels)
    pf = pass_features(ws, hierarchy, options)
    opts = _resize_options(ws, hierarchy, coefficients, levels, set_name, band, options) if far else ()
    all_notes = tuple(ws.notes) + tuple(hierarchy.notes) + tuple(notes)
    if ws.source != "mlp" and FITTED_ON_MLPS not in all_notes:
        all_notes += (FITTED_ON_MLPS,)
    if ws.dataset is None:
        all_notes += (("dataset size unknown: the dataset working set d is left out of the "
                       "prediction (pass n_samples to include it)"),)
    return Advice(far, set_name, (float(band[0]), float(band[1])), levels, tuple(opts), ws,
                  hierarchy, pf, coefficients,
                  joules_per_sample(pf, coefficients, ws.batch_size), n_samples, all_notes)


def _resize_options(
    ws: WorkingSets,
    hierarchy: Hierarchy,
    coefficients: Coefficients,
    levels: tuple[LevelRatio, ...],
    set_name: str,
    band: tuple[float, float],
    options: ModelOptions | None,
) -> tuple[ResizeOption, ...]:
    """For a network far from every boundary: the width scaling that brings the judged set into
    the band of the nearest cache level below (shrink) and above (grow), with its J/sample."""
    cache_idx = [i for i, lv in enumerate(hierarchy.levels) if lv.is_cache]
    below = [i for i, lr in zip(cache_idx, levels) if lr.ratio > band[1]]
    above = [i for i, lr in zip(cache_idx, levels) if lr.ratio < band[0]]
    target = band[0] + 0.25 * (band[1] - band[0])
    opts: list[ResizeOption] = []
    for direction, cand in (("shrink", below[-1:]), ("grow", above[:1])):
        for i in cand:
            found = _search_scale(ws, hierarchy, set_name, i, target, band)
            if found is None:
                continue
            scale, w2, r = found
            opts.append(ResizeOption(
                direction, hierarchy.levels[i].name, scale, w2.ntp, w2.widths, r,
                band[0] <= r <= band[1],
                joules_per_sample(pass_features(w2, hierarchy, options), coefficients,
                                  w2.batch_size),
            ))
    return tuple(opts)


def advice_from_widths(
    widths: list[int], n_in: int, batch_size: int, hierarchy: Hierarchy, **kw: Any
) -> Advice:
    """Convenience: advice for a Dense MLP of ``widths`` (output included) fed ``n_in`` inputs."""
    n_samples = kw.get("n_samples")
    ws = mlp_working_sets(widths, n_in, batch_size, n_obs=n_samples,
                          element_bytes=kw.pop("element_bytes", 4),
                          optimizer_state=kw.pop("optimizer_state", False))
    return advise(ws, hierarchy, **kw)

