"""Cache-aware sizing advice (spec section 7): batch-size options first, then width options.

For each cache level, the per-unit footprint the judged working set (the backward set ``b`` by
default) would have there — what the inter-layer sets already occupy plus ``r + s/units`` —
divided by that level's cumulative per-unit capacity is the ratio ``ρ``. The network is *near*
a cache boundary when ``1 ≤ ρ ≤ 2`` for some level (it fills or just spills it) and *far*
otherwise; the paper found energy-to-loss lowest near such a boundary.

The options, all for the same training data and all model estimates:

* **batch size** (``kind="batch_size"``), the lever that leaves the model unchanged: the
  activations in ``t_l`` and ``b`` grow with the batch, so the batch size moves ``b`` across
  the cache levels. Powers of two in ``batch_range`` and the user's own batch size, each with
  where ``b`` lands, the predicted J/sample and J/epoch with an error band (``± cv_error`` of
  the coefficients), and the memory it needs. Ranked by predicted J/sample.
* **width** (``kind="width"``, when far): the width scaling that brings ``ρ`` into the band of
  the nearest level below and above. Ranked after the batch sizes, and shown only when they
  change the predicted J/sample by more than the error band (the rest are in
  ``Advice.hidden_options``).

Example:
    >>> from wattwise.model.advise import advise
    >>> from wattwise.model.working_sets import mlp_working_sets
    >>> from wattwise.model.hierarchy import BUTTER_E_CPU
    >>> a = advise(mlp_working_sets([512, 512, 10], 784, 256), BUTTER_E_CPU)
    >>> a.far, [o.direction for o in a.width_options]
    (True, ['shrink', 'grow'])
    >>> a.options[0].kind, a.options[0].batch_size
    ('batch_size', 1024)
"""

from __future__ import annotations

import math
from dataclasses import field, replace
from typing import Any

from wattwise._record import record
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
    "DEFAULT_BATCH_RANGE",
    "Advice",
    "LevelRatio",
    "MemoryNeed",
    "ResizeOption",
    "advice_from_widths",
    "advise",
    "footprints",
    "memory_need",
    "rebatch_working_sets",
    "scale_working_sets",
]

DEFAULT_BATCH_RANGE = (16, 1024)
"""The batch sizes the advice considers by default: powers of two from 16 to 1024 (and the
user's own)."""

MiB = 1024.0**2

FITTED_ON_MLPS = (
    "the coefficients were fitted on dense MLPs (BUTTER-E); for other layer types the "
    "prediction is a rough estimate"
)


@record
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


@record
class MemoryNeed:
    """Memory one training step needs, from the working sets, bytes (an estimate).

    Counted: the parameters and their gradients (and Adam's two moments when the working sets
    count them) and every layer's input and output activations of one batch, kept for the
    backward pass. Not counted: activation gradients in flight, framework workspace and
    allocator slack, the data loader.

    Attributes:
        parameter_bytes: parameters + gradients (+ optimizer moments when counted).
        activation_bytes: activations of one batch.
    """

    parameter_bytes: float
    activation_bytes: float

    @property
    def total_bytes(self) -> float:
        """``parameter_bytes + activation_bytes``."""
        return self.parameter_bytes + self.activation_bytes

    def to_json(self) -> dict[str, Any]:
        """JSON form (MiB, and what is counted)."""
        return {"total_mib": self.total_bytes / MiB, "parameter_mib": self.parameter_bytes / MiB,
                "activation_mib": self.activation_bytes / MiB, "counted": MEMORY_COUNTED}


MEMORY_COUNTED = ("parameters + their gradients (+ optimizer moments when counted) + every "
                  "layer's input and output activations of one batch; not activation gradients, "
                  "framework workspace or the data loader")


def memory_need(ws: WorkingSets) -> MemoryNeed:
    """The memory a training step of ``ws`` needs (see :class:`MemoryNeed`)."""
    max_t = max((t.distributed_bytes for t in ws.inter_layer), default=0.0)
    return MemoryNeed(float(ws.backward.replicated_bytes),
                      float(ws.backward.distributed_bytes) + float(max_t))


@record
class ResizeOption:
    """One option: another batch size (same model) or scaled widths (another model).

    Attributes:
        direction: ``"smaller"``, ``"larger"`` or ``"current"`` for a batch size; ``"shrink"``
            or ``"grow"`` for widths.
        level: width option: the cache level whose band it targets; batch-size option: where
            ``b`` lands: the first cache level it fits in (``ratio <= 1``), else the last cache
            level (which it spills).
        width_scale: factor applied to the hidden widths (1.0 for a batch size; approximate for
            non-MLP models).
        ntp: resulting number of trainable parameters.
        widths: resulting widths for an MLP, else None.
        ratio: resulting ``ρ`` at ``level``.
        in_band: whether ``ρ`` lands in the near band at some cache level.
        joules_per_sample: predicted training joules per sample (estimate).
        kind: ``"batch_size"`` or ``"width"``.
        batch_size: samples per batch of this option.
        joules_per_sample_band: ``(low, high)`` J/sample from the coefficients' ``cv_error``,
            None when they carry none.
        joules_per_epoch: predicted training joules per epoch, when the samples per epoch are
            known.
        change: predicted J/sample relative to the current configuration, minus 1.
        memory: the memory a training step needs.
        near_levels: the cache levels whose near band ``b`` is in.
    """

    direction: str
    level: str
    width_scale: float
    ntp: int
    widths: tuple[int, ...] | None
    ratio: float
    in_band: bool
    joules_per_sample: float
    kind: str = "width"
    batch_size: int | None = None
    joules_per_sample_band: tuple[float, float] | None = None
    joules_per_epoch: float | None = None
    change: float = 0.0
    memory: MemoryNeed | None = None
    near_levels: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": self.kind, "direction": self.direction, "batch_size": self.batch_size,
            "level": self.level, "width_scale": self.width_scale, "ntp": self.ntp,
            "widths": None if self.widths is None else list(self.widths),
            "ratio": self.ratio, "in_band": self.in_band, "near_levels": list(self.near_levels),
            "estimated_joules_per_sample": self.joules_per_sample,
            "estimated_joules_per_sample_band": (None if self.joules_per_sample_band is None
                                                 else list(self.joules_per_sample_band)),
            "estimated_joules_per_epoch": self.joules_per_epoch,
            "change_vs_current": self.change,
            "memory": None if self.memory is None else self.memory.to_json(),
        }

    def describe(self, set_name: str = "b", error: float | None = None) -> str:
        """One line, units everywhere."""
        band = "" if error is None else f" ±{100 * error:.3g} %"
        if self.kind == "batch_size":
            head = f"batch size {self.batch_size}" + (" (current)" if self.direction == "current"
                                                      else "")
            fits = "fits in" if self.ratio <= 1 else "spills"
            where = (f"{set_name} {fits} {self.level} ({self.ratio:.3g}x"
                     + (f"; NEAR {'/'.join(self.near_levels)}" if self.near_levels else "")
                     + ")")
        else:
            w = f" widths {list(self.widths)}," if self.widths is not None else ""
            head = f"{self.direction} widths x{self.width_scale:.3g} ->{w} NTP {self.ntp:,}"
            where = (f"{set_name} at {self.ratio:.3g}x {self.level}"
                     + ("" if self.in_band else " (rounding misses the band)"))
        parts = [head, where, f"{_fmt_j(self.joules_per_sample)}{band} per sample"]
        if self.direction != "current":
            parts[-1] += f" ({_pct(self.change)})"
        if self.joules_per_epoch is not None:
            parts.append(f"{_fmt_j(self.joules_per_epoch)} per epoch")
        if self.memory is not None:
            parts.append(f"memory {self.memory.total_bytes / MiB:.3g} MiB")
        return ", ".join(parts) + " (estimates)"


@record
class Advice:
    """Sizing advice for one network, batch size and machine. All energies are estimates.

    Attributes:
        far: True when the judged set is far from every cache boundary.
        set_name: the judged set (``"b"`` or ``"f"``).
        band: the near band ``(low, high)`` of ratios.
        levels: the ratio per cache level.
        options: the options shown, ranked: batch sizes by predicted J/sample, then the width
            options whose J/sample differs from the current one by more than the error band.
        working_sets: the working sets.
        hierarchy: the memory hierarchy.
        features: per-pass model features (what a refit needs).
        coefficients: the coefficients used.
        joules_per_sample: predicted training joules per sample (estimate).
        n_samples: training samples per epoch, when known.
        notes: caveats (what was measured vs derived, what was assumed).
        hidden_options: width options left out of :attr:`options` (within the error band).
        batch_range: the range of batch sizes considered.
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
    hidden_options: tuple[ResizeOption, ...] = ()
    batch_range: tuple[int, int] = DEFAULT_BATCH_RANGE

    @property
    def near(self) -> bool:
        """Not :attr:`far`."""
        return not self.far

    @property
    def error(self) -> float | None:
        """The error band as a fraction: the coefficients' ``cv_error`` (None: no band)."""
        return self.coefficients.cv_error

    @property
    def batch_options(self) -> tuple[ResizeOption, ...]:
        """The batch-size options (the current batch size among them), ranked."""
        return tuple(o for o in self.options if o.kind == "batch_size")

    @property
    def width_options(self) -> tuple[ResizeOption, ...]:
        """Every width option, shown or hidden."""
        return tuple(sorted((o for o in self.options + self.hidden_options if o.kind == "width"),
                            key=lambda o: o.direction != "shrink"))

    @property
    def best(self) -> ResizeOption | None:
        """The option with the lowest predicted J/sample (the first of :attr:`options`)."""
        return self.options[0] if self.options else None

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
            "hidden_options": [o.to_json() for o in self.hidden_options],
            "batch_range": list(self.batch_range),
            "error_band": self.error,
            "estimated_joules_per_sample": self.joules_per_sample,
            "estimated_joules_per_sample_band": _band(self.joules_per_sample, self.error),
            "estimated_joules_per_epoch": self.joules_per_epoch,
            "n_samples": self.n_samples,
            "batch_size": self.working_sets.batch_size,
            "memory": memory_need(self.working_sets).to_json(),
            "working_sets": self.working_sets.to_json(),
            "placements": self.features.placements.to_json(),
            "hierarchy": self.hierarchy.to_json(),
            "features": self.features.to_json(),
            "coefficients": self.coefficients.to_json(),
            "notes": list(self.notes),
            "text": self.text(),
        }

    def headline(self) -> str:
        """The best option in one line (the first line of :meth:`text`)."""
        best, err = self.best, self.error
        head = "wattwise sizing advice (BUTTER-E model estimates): "
        if best is None:
            return head + "no option computed"
        if best.direction == "current":
            return (head + f"best option: keep batch size {best.batch_size} "
                    f"({_fmt_j(best.joules_per_sample)} per sample; no option considered is "
                    "predicted lower)")
        what = (f"batch size {best.batch_size} instead of {self.working_sets.batch_size}"
                if best.kind == "batch_size" else best.describe(self.set_name).split(",")[0])
        within = ("" if err is None or abs(best.change) > err
                  else f"; within the model's ±{100 * err:.3g} % error, not a sure saving")
        return (head + f"best option: {what}: {_fmt_j(best.joules_per_sample)} per sample "
                f"({_pct(best.change)}{within})")

    def text(self) -> str:
        """Readable multi-line advice, led by the best option, units everywhere."""
        ws = self.working_sets
        s = ws.backward if self.set_name == "b" else ws.forward
        lines = [self.headline()]
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
                         "level's capacity, where the paper found energy to reach a loss lowest)")
        else:
            near = ", ".join(lr.level for lr in self.levels if lr.near)
            lines.append(f"verdict: near a cache boundary ({near}); no resize of the widths suggested")
        err = self.error
        band = ("no error band: the coefficients carry no cv_error" if err is None
                else f"±{100 * err:.3g} %, the coefficients' cross-validated error")
        lines.append(f"predicted training energy: {_fmt_j(self.joules_per_sample)} per sample "
                     f"(estimate), {band}")
        if self.joules_per_epoch is not None:
            lines.append(f"predicted training energy: {_fmt_j(self.joules_per_epoch)} per epoch of "
                         f"{self.n_samples:,} samples (estimate)")
        lo_b, hi_b = self.batch_range
        lines.append(f"options: batch sizes {lo_b}-{hi_b} and yours (same model), lowest "
                     "predicted J/sample first; then widths (another model):")
        for o in self.options:
            lines.append(f"  option: {o.describe(self.set_name, err)}")
        if self.hidden_options:
            what = "; ".join(f"{o.direction} widths x{o.width_scale:.3g} ({_pct(o.change)})"
                             for o in self.hidden_options)
            lines.append(f"  not shown: width options within the ±{100 * (err or 0):.3g} % error "
                         f"band: {what}")
        if any(o.kind == "batch_size" and o.direction != "current" for o in self.options):
            lines.append("note: a different batch size changes the optimisation too (learning "
                         "rate, epochs to reach a loss); the model predicts energy per step only")
        lines.append(f"note: memory = {MEMORY_COUNTED}")
        for n in self.notes:
            lines.append(f"note: {n}")
        return "\n".join(lines)


def _pct(change: float) -> str:
    """A relative change as a signed percentage."""
    v = 100 * change
    return f"{v:+.0f} %" if abs(v) >= 100 else f"{v:+.3g} %"


def _band(value: float, error: float | None) -> list[float] | None:
    return None if error is None else [value * (1 - error), value * (1 + error)]


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
    level = hierarchy.levels[level_index].name
    seen: dict[tuple[int, ...], tuple[WorkingSets, float]] = {}

    def at(log_scale: float) -> tuple[WorkingSets, float]:
        """The scaled working sets and their ratio; an MLP's are computed once per distinct
        rounded widths (the bisection's last ~50 steps only move between two of them)."""
        scale = math.exp(log_scale)
        key = None if ws.widths is None or ws.n_in is None else \
            tuple(max(1, round(w * scale)) for w in ws.widths[:-1])
        if key is not None and key in seen:
            return seen[key]
        w = scale_working_sets(ws, scale)
        found = (w, next(r.ratio for r in footprints(w, hierarchy, set_name, band)
                         if r.level == level))
        if key is not None:
            seen[key] = found
        return found

    lo, hi = math.log(1e-4), math.log(1e4)
    for _ in range(60):
        mid = (lo + hi) / 2
        if at(mid)[1] < target:
            lo = mid
        else:
            hi = mid
    best: tuple[float, WorkingSets, float] | None = None
    for cand in (lo, hi):
        w, r = at(cand)
        if best is None or abs(r - target) < abs(best[2] - target):
            best = (math.exp(cand), w, r)
    if best is None or not (band[0] * 0.5 <= best[2] <= band[1] * 2):
        return None  # unreachable by scaling (e.g. widths already 1)
    return best


def rebatch_working_sets(ws: WorkingSets, batch_size: int) -> WorkingSets:
    """The working sets of the same model trained with ``batch_size`` samples per batch.

    Exact for every model the spec covers: the activation parts (``t_l``, the distributed parts
    of ``f`` and ``b``) and the per-sample operations scale with the batch; the parameters
    (replicated parts), the weight update (``NTP`` operations of ``o_b``) and the dataset set
    ``d`` do not.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"rebatch_working_sets(batch_size={batch_size!r}) must be a "
                                 "positive int")
    r = batch_size / ws.batch_size

    def scaled(w: WorkingSet) -> WorkingSet:
        return WorkingSet(w.name, w.replicated_bytes, w.distributed_bytes * r)

    return replace(
        ws,
        inter_layer=tuple(scaled(t) for t in ws.inter_layer),
        forward=scaled(ws.forward),
        backward=scaled(ws.backward),
        ops_forward=ws.ops_forward * r,
        ops_backward=(ws.ops_backward - ws.ntp) * r + ws.ntp,
        batch_size=batch_size,
    )


def _batch_sizes(current: int, batch_range: tuple[int, int]) -> list[int]:
    lo, hi = batch_range
    sizes = {current}
    p = 1
    while p <= hi:
        if p >= lo:
            sizes.add(p)
        p *= 2
    return sorted(sizes)


def _check_batch_range(batch_range: tuple[int, int]) -> tuple[int, int]:
    ok = (isinstance(batch_range, (tuple, list)) and len(batch_range) == 2
          and all(isinstance(v, int) and not isinstance(v, bool) for v in batch_range)
          and 1 <= batch_range[0] <= batch_range[1])
    if not ok:
        raise ConfigurationError(
            f"advise(batch_range={batch_range!r}) must be (smallest, largest) batch sizes, ints "
            "with 1 <= smallest <= largest, e.g. (16, 1024)")
    return int(batch_range[0]), int(batch_range[1])


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
    batch_range: tuple[int, int] = DEFAULT_BATCH_RANGE,
) -> Advice:
    """Sizing advice for working sets ``ws`` on ``hierarchy``.

    Args:
        ws: the working sets (from :func:`~wattwise.model.working_sets.mlp_working_sets` or
            measured by :mod:`wattwise.introspect`).
        hierarchy: the memory hierarchy.
        coefficients: default ``preset(hierarchy.kind)`` (the default preset for the kind).
            Their ``cv_error`` is the error band of every prediction (None: no band, said so).
        band: ``(low, high)`` ratio band counted as near a boundary (default 1x-2x).
        set_name: the set to judge, ``"b"`` (backward, default) or ``"f"`` (forward).
        options: model options.
        n_samples: training samples per epoch, for the per-epoch estimates.
        notes: extra caveats to carry (e.g. what hardware was assumed).
        batch_range: ``(smallest, largest)`` batch sizes considered: the powers of two in it,
            and ``ws.batch_size`` (default ``(16, 1024)``).

    Returns:
        :class:`Advice`.
    """
    if set_name not in ("b", "f"):
        raise ConfigurationError(f"advise(set_name={set_name!r}) must be 'b' or 'f'")
    if not (len(band) == 2 and 0 < band[0] < band[1]):
        raise ConfigurationError(f"advise(band={band!r}) must be (low, high) with 0 < low < high")
    if not hierarchy.caches:
        raise ConfigurationError(f"advise: hierarchy {hierarchy.name!r} has no cache level")
    batch_range = _check_batch_range(batch_range)
    if coefficients is None:
        coefficients = preset(hierarchy.kind)
    levels = footprints(ws, hierarchy, set_name, band)
    far = not any(lr.near for lr in levels)
    pf = pass_features(ws, hierarchy, options)
    jps = joules_per_sample(pf, coefficients, ws.batch_size)
    ctx = _Ctx(hierarchy, coefficients, set_name, band, options, n_samples, jps)
    batch = sorted((ctx.option(rebatch_working_sets(ws, bs), "batch_size", ws.batch_size)
                    for bs in _batch_sizes(ws.batch_size, batch_range)),
                   key=lambda o: (o.joules_per_sample, o.batch_size or 0))
    widths = _resize_options(ws, ctx, levels) if far else ()
    err = coefficients.cv_error
    shown = tuple(o for o in widths if err is None or abs(o.change) > err)
    hidden = tuple(o for o in widths if o not in shown)
    all_notes = tuple(ws.notes) + tuple(hierarchy.notes) + tuple(notes)
    if ws.source != "mlp" and FITTED_ON_MLPS not in all_notes:
        all_notes += (FITTED_ON_MLPS,)
    if ws.dataset is None:
        all_notes += (("dataset size unknown: the dataset working set d is left out of the "
                       "prediction (pass n_samples to include it)"),)
    if err is None:
        all_notes += ("no error band: the coefficients carry no cv_error (cross-validate a "
                      "refit to get one); every width option is shown",)
    return Advice(far, set_name, (float(band[0]), float(band[1])), levels,
                  tuple(batch) + shown, ws, hierarchy, pf, coefficients, jps, n_samples,
                  all_notes, hidden, batch_range)


@record
class _Ctx:
    """What every option of one advice is computed with."""

    hierarchy: Hierarchy
    coefficients: Coefficients
    set_name: str
    band: tuple[float, float]
    options: ModelOptions | None
    n_samples: int | None
    current_jps: float

    def option(self, w: WorkingSets, kind: str, current_batch: int, direction: str = "",
               level: str | None = None, width_scale: float = 1.0) -> ResizeOption:
        pf = pass_features(w, self.hierarchy, self.options)
        jps = joules_per_sample(pf, self.coefficients, w.batch_size)
        lrs = footprints(w, self.hierarchy, self.set_name, self.band)
        near = tuple(lr.level for lr in lrs if lr.near)
        if level is None:  # a batch size: the first cache the set fits in, else the last one
            level = next((lr.level for lr in lrs if lr.ratio <= 1.0), lrs[-1].level)
        ratio = next(lr.ratio for lr in lrs if lr.level == level)
        if not direction:
            direction = ("current" if w.batch_size == current_batch else
                         "larger" if w.batch_size > current_batch else "smaller")
        epoch = (None if self.n_samples is None else
                 math.ceil(self.n_samples / w.batch_size) * predict(pf.train_step, self.coefficients))
        band = _band(jps, self.coefficients.cv_error)
        return ResizeOption(
            direction, level, width_scale, w.ntp, w.widths, ratio,
            self.band[0] <= ratio <= self.band[1] if kind == "width" else bool(near), jps,
            kind=kind, batch_size=w.batch_size,
            joules_per_sample_band=None if band is None else (band[0], band[1]),
            joules_per_epoch=epoch, change=jps / self.current_jps - 1,
            memory=memory_need(w), near_levels=near,
        )


def _resize_options(ws: WorkingSets, ctx: _Ctx,
                    levels: tuple[LevelRatio, ...]) -> tuple[ResizeOption, ...]:
    """For a network far from every boundary: the width scaling that brings the judged set into
    the band of the nearest cache level below (shrink) and above (grow), with its J/sample."""
    hierarchy, band = ctx.hierarchy, ctx.band
    cache_idx = [i for i, lv in enumerate(hierarchy.levels) if lv.is_cache]
    below = [i for i, lr in zip(cache_idx, levels) if lr.ratio > band[1]]
    above = [i for i, lr in zip(cache_idx, levels) if lr.ratio < band[0]]
    target = band[0] + 0.25 * (band[1] - band[0])
    opts: list[ResizeOption] = []
    for direction, cand in (("shrink", below[-1:]), ("grow", above[:1])):
        for i in cand:
            found = _search_scale(ws, hierarchy, ctx.set_name, i, target, band)
            if found is None:
                continue
            scale, w2, _ = found
            opts.append(ctx.option(w2, "width", ws.batch_size, direction,
                                   hierarchy.levels[i].name, scale))
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

