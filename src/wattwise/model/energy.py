"""Energy of a training run from placed working sets (spec sections 5 and 6).

The model is linear in the 12 coefficients ``k``: ``E = X·k``. :func:`pass_features` gives
the feature vectors of one forward pass ``E_f``, one backward pass ``E_b`` and one test
forward pass ``E_f'`` of one batch; :func:`run_features` combines them into one row for a
whole run: ``E = k_e + n·(h_t·(E_f + E_b) + h_s·E_f')``.

Example:
    >>> from wattwise.model.working_sets import mlp_working_sets
    >>> from wattwise.model.hierarchy import BUTTER_E_GPU
    >>> from wattwise.model.coefficients import preset
    >>> ws = mlp_working_sets([13, 13, 1], 4, 256, n_obs=3848, bytes_per_datum=20)
    >>> pf = pass_features(ws, BUTTER_E_GPU)
    >>> round(predict(run_features(pf, epochs=3000, train_batches=13, test_batches=4),
    ...               preset("paper-gpu")) / 1000, 1)
    369.6
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from wattwise._record import record
from wattwise.errors import ConfigurationError
from wattwise.model.coefficients import COEFFICIENT_NAMES, Coefficients
from wattwise.model.hierarchy import Hierarchy, Placement, place
from wattwise.model.working_sets import WorkingSets

__all__ = [
    "ModelOptions",
    "PassFeatures",
    "Placements",
    "joules_per_sample",
    "pass_features",
    "place_working_sets",
    "predict",
    "run_features",
]

MiB = 1024.0**2


@record
class ModelOptions:
    """Options of the energy model.

    Attributes:
        shift_inter_layer_counts: the authors' code charges the *count* of inter-layer
            accesses one level up (an L1 access costs ``a2``). Makes CPU predictions unbiased;
            off by default (the paper's text).
        size_basis: which size enters ``m·s``: ``"total"`` (``r + s``, the spec's default) or
            ``"cached"`` (the per-unit footprint ``r + s/units``).
    """

    shift_inter_layer_counts: bool = False
    size_basis: str = "total"

    def __post_init__(self) -> None:
        if self.size_basis not in ("total", "cached"):
            raise ConfigurationError(
                f"ModelOptions(size_basis={self.size_basis!r}) must be 'total' or 'cached'"
            )

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"shift_inter_layer_counts": self.shift_inter_layer_counts,
                "size_basis": self.size_basis}

    @classmethod
    def from_json(cls, d: Mapping[str, Any] | None) -> ModelOptions:
        """Inverse of :meth:`to_json`."""
        d = d or {}
        return cls(bool(d.get("shift_inter_layer_counts", False)), str(d.get("size_basis", "total")))


@record
class Placements:
    """Where each working set landed (spec section 4)."""

    inter_layer: tuple[Placement, ...]
    forward: Placement
    backward: Placement
    dataset: Placement | None
    start_occupied_bytes: float = 0.0
    """Per-unit bytes occupied by the inter-layer sets when ``f`` and ``b`` are placed."""

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "inter_layer": [p.to_json() for p in self.inter_layer],
            "forward": self.forward.to_json(),
            "backward": self.backward.to_json(),
            "dataset": None if self.dataset is None else self.dataset.to_json(),
            "start_occupied_bytes": self.start_occupied_bytes,
        }


def place_working_sets(ws: WorkingSets, hierarchy: Hierarchy) -> Placements:
    """Place every working set in ``hierarchy`` in the spec's order.

    Each ``t_l`` alone from zero; ``f`` and ``b`` each from the column-wise maximum of the
    ``t_l`` results (truncated to int); ``d`` from ``b``'s results (truncated to int).
    """
    ts = tuple(place(hierarchy, t.replicated_bytes, t.distributed_bytes) for t in ws.inter_layer)
    occ = int(max(p.occupied_bytes for p in ts))
    sing = int(max(p.singular_occupied_bytes for p in ts))
    eff = int(max(p.effective_bytes for p in ts))
    f = place(hierarchy, ws.forward.replicated_bytes, ws.forward.distributed_bytes, occ, sing, eff)
    b = place(hierarchy, ws.backward.replicated_bytes, ws.backward.distributed_bytes, occ, sing, eff)
    d = None
    if ws.dataset is not None:
        d = place(hierarchy, ws.dataset.replicated_bytes, ws.dataset.distributed_bytes,
                  int(b.occupied_bytes), int(b.singular_occupied_bytes), int(b.effective_bytes))
    return Placements(ts, f, b, d, float(occ))


@record
class PassFeatures:
    """Feature vectors (12 entries, :data:`COEFFICIENT_NAMES` order) of one batch's passes.

    ``forward``, ``backward`` and ``test_forward`` are the features of ``E_f``, ``E_b`` and
    ``E_f'``; their ``k_e`` entry is 0 (``k_e`` is per run).
    """

    forward: tuple[float, ...]
    backward: tuple[float, ...]
    test_forward: tuple[float, ...]
    placements: Placements
    options: ModelOptions = field(default_factory=ModelOptions)

    @property
    def train_step(self) -> tuple[float, ...]:
        """Features of one training batch, ``E_f + E_b``."""
        return tuple(a + b for a, b in zip(self.forward, self.backward))

    def to_json(self) -> dict[str, Any]:
        """JSON form (what ``wattwise fit`` needs to refit from a run summary)."""
        return {
            "names": list(COEFFICIENT_NAMES),
            "forward": list(self.forward),
            "backward": list(self.backward),
            "test_forward": list(self.test_forward),
            "options": self.options.to_json(),
        }


def _phi(x: list[float], p: Placement, size_bytes: float, count_level: int | None = None) -> None:
    c = p.coef_level if count_level is None else count_level
    x[3 + c] += 1.0
    x[7 + p.coef_level] += size_bytes / MiB


def pass_features(
    ws: WorkingSets, hierarchy: Hierarchy, options: ModelOptions | None = None
) -> PassFeatures:
    """Feature vectors of ``E_f``, ``E_b`` and ``E_f'`` for one batch (spec section 6).

    Args:
        ws: the working sets.
        hierarchy: the memory hierarchy.
        options: model options (default: the paper's text).
    """
    opts = options or ModelOptions()
    pl = place_working_sets(ws, hierarchy)
    levels = hierarchy.levels

    def size(p: Placement) -> float:
        return p.singular_bytes if opts.size_basis == "total" else p.cached_bytes

    def common(ops: float) -> list[float]:
        x = [0.0] * 12
        x[1] = 1.0
        x[2] = ops / 1e9
        x[3] = float(ws.depth)
        for p in pl.inter_layer:
            cl = None
            if opts.shift_inter_layer_counts:
                cl = levels[min(p.level_index + 1, len(levels) - 1)].coef_level
            _phi(x, p, size(p), cl)
        return x

    xf = common(ws.ops_forward)
    xb = common(ws.ops_backward)
    if pl.dataset is not None:
        _phi(xf, pl.dataset, size(pl.dataset))
    _phi(xf, pl.forward, size(pl.forward))
    _phi(xb, pl.backward, size(pl.backward))
    # f' takes f's level and has f's size: E_f' has the same features as E_f
    return PassFeatures(tuple(xf), tuple(xb), tuple(xf), pl, opts)


def run_features(
    pf: PassFeatures, *, epochs: float, train_batches: float, test_batches: float,
    include_run_overhead: bool = True,
) -> tuple[float, ...]:
    """One feature row of a whole run: ``E = k_e + n·(h_t·(E_f + E_b) + h_s·E_f')``.

    Args:
        pf: pass features.
        epochs: ``n``.
        train_batches: ``h_t``, train batches per epoch.
        test_batches: ``h_s``, test (validation) batches per epoch.
        include_run_overhead: include the ``k_e`` (per-run) term.
    """
    row = [
        epochs * (train_batches * (f + b) + test_batches * t)
        for f, b, t in zip(pf.forward, pf.backward, pf.test_forward)
    ]
    row[0] = 1.0 if include_run_overhead else 0.0
    return tuple(row)


def predict(features: Sequence[float], coefficients: Coefficients | Sequence[float]) -> float:
    """``X·k`` in joules."""
    k = coefficients.values if isinstance(coefficients, Coefficients) else tuple(coefficients)
    if len(features) != 12 or len(k) != 12:
        raise ConfigurationError("predict: features and coefficients need 12 entries each")
    return float(sum(x * c for x, c in zip(features, k)))


def joules_per_sample(pf: PassFeatures, coefficients: Coefficients, batch_size: int) -> float:
    """Predicted training joules per sample: ``(E_f + E_b) / B`` (no run overhead ``k_e``,
    no evaluation passes). An estimate from the model, not a measurement."""
    return predict(pf.train_step, coefficients) / batch_size
