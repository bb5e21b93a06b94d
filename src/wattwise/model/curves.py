"""The model's predicted joules per sample against network size (NTP) or batch size, and the
cache boundaries.

For one BUTTER shape and depth, :func:`ntp_curve` walks log-spaced target sizes, builds the
network at each, and records the model's predicted training energy per sample (an estimate)
and the judged working set's footprint ratio at every cache level. Where that ratio first
reaches 1 the set fills the level (the boundary); up to 2 it is *near* it, where the paper
found the energy *to reach a loss* lowest - not the energy per step these curves show, which
only steps up where a set spills. :func:`batch_curve` does the same for one model over batch
sizes (the activations in ``b`` grow with the batch). ``wattwise advise --plot`` draws both;
``wattwise sweep`` the first.

Pure functions, no I/O.

Example:
    >>> from wattwise.model.curves import ntp_curve
    >>> from wattwise.model.coefficients import preset
    >>> from wattwise.model.hierarchy import BUTTER_E_CPU
    >>> c = ntp_curve(BUTTER_E_CPU, preset("cpu"), shape="rectangle", depth=3, n_in=784,
    ...               n_out=10, batch_size=256, points=40)
    >>> sorted(c.boundaries)
    ['L1', 'L2', 'L3']
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from wattwise._record import record
from wattwise.errors import ConfigurationError
from wattwise.model.advise import footprints, rebatch_working_sets
from wattwise.model.coefficients import Coefficients
from wattwise.model.energy import joules_per_sample, pass_features
from wattwise.model.hierarchy import Hierarchy
from wattwise.model.shapes import network_widths
from wattwise.model.working_sets import WorkingSets, mlp_working_sets

__all__ = ["BatchCurve", "NtpCurve", "batch_curve", "log_spaced", "ntp_curve"]


def log_spaced(lo: int, hi: int, points: int) -> list[int]:
    """``points`` integers spaced evenly in log from ``lo`` to ``hi`` (rounded, deduplicated).

    Example:
        >>> log_spaced(1000, 100000, 3)
        [1000, 10000, 100000]
    """
    if not 1 <= lo <= hi or points < 1:
        raise ConfigurationError(
            f"log_spaced(lo={lo!r}, hi={hi!r}, points={points!r}): expected 1 <= lo <= hi "
            "and points >= 1"
        )
    if points == 1 or lo == hi:
        return [lo]
    a, b = math.log(lo), math.log(hi)
    return sorted({round(math.exp(a + (b - a) * i / (points - 1))) for i in range(points)})


@record
class NtpCurve:
    """Predicted J/sample over NTP for one shape, with the footprint ratios per cache level.

    Attributes:
        ntp: parameter counts, increasing.
        joules_per_sample: the model's predicted training energy per sample at each NTP, J
            (an estimate).
        ratios: per NTP, cache level -> footprint of the judged set / the level's capacity.
        set_name: the judged working set (``"b"`` backward, ``"f"`` forward).
    """

    ntp: tuple[int, ...]
    joules_per_sample: tuple[float, ...]
    ratios: tuple[Mapping[str, float], ...]
    set_name: str = "b"

    def _first(self, level: str, threshold: float, start: int = 1) -> int | None:
        """Index of the first point from ``start`` where the ratio crosses ``threshold`` up."""
        for j in range(max(1, start), len(self.ntp)):
            before, now = self.ratios[j - 1].get(level), self.ratios[j].get(level)
            if before is not None and now is not None and before < threshold <= now:
                return j
        return None

    @property
    def boundaries(self) -> dict[str, int]:
        """Cache level -> the first NTP at which the judged set fills it (ratio reaches 1)."""
        levels = dict.fromkeys(lv for r in self.ratios for lv in r)
        out: dict[str, int] = {}
        for level in levels:
            j = self._first(level, 1.0)
            if j is not None:
                out[level] = self.ntp[j]
        return out

    def near_range(self, level: str) -> tuple[int, int | None] | None:
        """(first NTP at ratio >= 1, first NTP beyond ratio 2 or None) for ``level``: the sizes
        where the set is near that boundary; None when the curve never fills the level."""
        j = self._first(level, 1.0)
        if j is None:
            return None
        end = next((k for k in range(j, len(self.ntp)) if self.ratios[k][level] > 2.0), None)
        return self.ntp[j], None if end is None else self.ntp[end]

    def to_json(self) -> dict[str, Any]:
        """``{"ntp": [...], "joules_per_sample": [...], "boundaries": {level: ntp}}``."""
        return {
            "ntp": list(self.ntp),
            "joules_per_sample": list(self.joules_per_sample),
            "boundaries": self.boundaries,
            "set_name": self.set_name,
        }


def ntp_curve(
    hierarchy: Hierarchy,
    coefficients: Coefficients,
    *,
    shape: str,
    depth: int,
    n_in: int,
    n_out: int,
    batch_size: int,
    n_samples: int | None = None,
    set_name: str = "b",
    min_size: int = 2**6,
    max_size: int = 2**27,
    points: int = 120,
) -> NtpCurve:
    """The model's predicted J/sample against NTP for one BUTTER shape, on ``hierarchy``.

    Args:
        hierarchy: the memory hierarchy.
        coefficients: the energy model's coefficients.
        shape: a BUTTER shape (:data:`~wattwise.model.shapes.SHAPES`).
        depth: Dense layers, output included (>= 2).
        n_in: input width.
        n_out: output width.
        batch_size: samples per batch.
        n_samples: training samples per epoch (adds the dataset working set); None = unknown.
        set_name: the working set judged against the caches: ``"b"`` (default) or ``"f"``.
        min_size: the smallest target NTP (default 2**6).
        max_size: the largest target NTP (default 2**27).
        points: target sizes, log-spaced (default 120); sizes that give the same network
            appear once.

    Returns:
        The :class:`NtpCurve`.
    """
    xs: list[int] = []
    ys: list[float] = []
    rs: list[dict[str, float]] = []
    for size in log_spaced(min_size, max_size, points):
        widths = network_widths(shape, depth, size, n_in, n_out)
        ws = mlp_working_sets(widths, n_in, batch_size, n_obs=n_samples)
        if xs and ws.ntp <= xs[-1]:
            continue
        xs.append(ws.ntp)
        ys.append(joules_per_sample(pass_features(ws, hierarchy), coefficients, batch_size))
        rs.append({lr.level: lr.ratio for lr in footprints(ws, hierarchy, set_name)})
    return NtpCurve(tuple(xs), tuple(ys), tuple(rs), set_name)


@record
class BatchCurve:
    """Predicted J/sample over batch sizes for one model, with the footprint ratios.

    Attributes:
        batch_sizes: batch sizes, increasing.
        joules_per_sample: the model's predicted training energy per sample at each, J
            (an estimate).
        ratios: per batch size, cache level -> footprint of the judged set / the level's
            capacity.
        set_name: the judged working set.
    """

    batch_sizes: tuple[int, ...]
    joules_per_sample: tuple[float, ...]
    ratios: tuple[Mapping[str, float], ...]
    set_name: str = "b"

    @property
    def boundaries(self) -> dict[str, int]:
        """Cache level -> the first batch size at which the judged set fills it (ratio >= 1)."""
        out: dict[str, int] = {}
        for level in dict.fromkeys(lv for r in self.ratios for lv in r):
            for j in range(1, len(self.batch_sizes)):
                if self.ratios[j - 1][level] < 1.0 <= self.ratios[j][level]:
                    out[level] = self.batch_sizes[j]
                    break
        return out

    def to_json(self) -> dict[str, Any]:
        """``{"batch_sizes": [...], "joules_per_sample": [...], "boundaries": {level: b}}``."""
        return {"batch_sizes": list(self.batch_sizes),
                "joules_per_sample": list(self.joules_per_sample),
                "boundaries": self.boundaries, "set_name": self.set_name}


def batch_curve(
    ws: WorkingSets,
    hierarchy: Hierarchy,
    coefficients: Coefficients,
    *,
    min_batch: int = 1,
    max_batch: int = 4096,
    points: int = 80,
    set_name: str = "b",
) -> BatchCurve:
    """The model's predicted J/sample against batch size for the model of ``ws``.

    Args:
        ws: the working sets at any batch size (rebatched exactly, see
            :func:`~wattwise.model.advise.rebatch_working_sets`).
        hierarchy: the memory hierarchy.
        coefficients: the energy model's coefficients.
        min_batch: the smallest batch size (default 1).
        max_batch: the largest batch size (default 4096).
        points: batch sizes, log-spaced (default 80).
        set_name: the working set judged against the caches (default ``"b"``).

    Example:
        >>> from wattwise.model.working_sets import mlp_working_sets
        >>> from wattwise.model.coefficients import preset
        >>> from wattwise.model.hierarchy import BUTTER_E_GPU
        >>> c = batch_curve(mlp_working_sets([256, 256, 10], 256, 64), BUTTER_E_GPU,
        ...                 preset("gpu"), max_batch=16384)
        >>> c.boundaries["L2"]
        10024
    """
    sizes = log_spaced(min_batch, max_batch, points)
    ys, rs = [], []
    for b in sizes:
        w = rebatch_working_sets(ws, b)
        ys.append(joules_per_sample(pass_features(w, hierarchy), coefficients, b))
        rs.append({lr.level: lr.ratio for lr in footprints(w, hierarchy, set_name)})
    return BatchCurve(tuple(sizes), tuple(ys), tuple(rs), set_name)
