"""Working sets of a training step (spec section 3) and operation counts (section 5).

All sizes are bytes; operation counts are per batch, a multiply-add counted as ONE operation.

Example:
    >>> from wattwise.model.working_sets import mlp_working_sets
    >>> ws = mlp_working_sets([13, 13, 1], n_in=4, batch_size=256, n_obs=3848, bytes_per_datum=20)
    >>> ws.ntp, ws.backward.replicated_bytes, ws.backward.distributed_bytes
    (261, 2088, 5120)
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Any

from wattwise._record import record
from wattwise.errors import ConfigurationError
from wattwise.model.shapes import ntp as _ntp

__all__ = ["WorkingSet", "WorkingSets", "layer_working_sets", "mlp_working_sets"]


@record
class WorkingSet:
    """One working set: ``replicated_bytes`` copied to every core/SM, ``distributed_bytes``
    split across them."""

    name: str
    replicated_bytes: float
    distributed_bytes: float

    @property
    def total_bytes(self) -> float:
        """``r + s`` in bytes."""
        return float(self.replicated_bytes) + float(self.distributed_bytes)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {"name": self.name, "replicated_bytes": self.replicated_bytes,
                "distributed_bytes": self.distributed_bytes}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> WorkingSet:
        """Inverse of :meth:`to_json`."""
        return cls(str(d["name"]), float(d["replicated_bytes"]), float(d["distributed_bytes"]))


@record
class WorkingSets:
    """The working sets and operation counts of one training configuration.

    Attributes:
        inter_layer: ``t_l`` for l = 1..depth.
        forward: ``f`` (the test forward ``f'`` is the same set).
        backward: ``b``.
        dataset: ``d``, or None when the dataset size is unknown.
        ops_forward: ``o_f``, operations per forward pass of one batch.
        ops_backward: ``o_b``, operations per backward pass of one batch.
        depth: number of (Dense) layers.
        batch_size: samples per batch.
        ntp: number of trainable parameters.
        element_bytes: bytes per element (4 = float32).
        source: ``"mlp"`` (derived from widths) or the framework the sets were measured from.
        measured: names of the sets measured from a real model (empty for a derived MLP).
        notes: caveats (e.g. "coefficients were fitted on MLPs").
        widths: the Dense widths when the model is an MLP, else None.
        n_in: the input width when known.
    """

    inter_layer: tuple[WorkingSet, ...]
    forward: WorkingSet
    backward: WorkingSet
    dataset: WorkingSet | None
    ops_forward: float
    ops_backward: float
    depth: int
    batch_size: int
    ntp: int
    element_bytes: int = 4
    source: str = "mlp"
    measured: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    widths: tuple[int, ...] | None = None
    n_in: int | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON form (all sizes in bytes, ops per batch)."""
        return {
            "inter_layer": [t.to_json() for t in self.inter_layer],
            "forward": self.forward.to_json(),
            "backward": self.backward.to_json(),
            "dataset": None if self.dataset is None else self.dataset.to_json(),
            "ops_forward": self.ops_forward,
            "ops_backward": self.ops_backward,
            "depth": self.depth,
            "batch_size": self.batch_size,
            "ntp": self.ntp,
            "element_bytes": self.element_bytes,
            "source": self.source,
            "measured": list(self.measured),
            "notes": list(self.notes),
            "widths": None if self.widths is None else list(self.widths),
            "n_in": self.n_in,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> WorkingSets:
        """Inverse of :meth:`to_json`."""
        return cls(
            inter_layer=tuple(WorkingSet.from_json(t) for t in d["inter_layer"]),
            forward=WorkingSet.from_json(d["forward"]),
            backward=WorkingSet.from_json(d["backward"]),
            dataset=None if d.get("dataset") is None else WorkingSet.from_json(d["dataset"]),
            ops_forward=float(d["ops_forward"]),
            ops_backward=float(d["ops_backward"]),
            depth=int(d["depth"]),
            batch_size=int(d["batch_size"]),
            ntp=int(d["ntp"]),
            element_bytes=int(d.get("element_bytes", 4)),
            source=str(d.get("source", "mlp")),
            measured=tuple(d.get("measured", ())),
            notes=tuple(d.get("notes", ())),
            widths=None if d.get("widths") is None else tuple(int(w) for w in d["widths"]),
            n_in=None if d.get("n_in") is None else int(d["n_in"]),
        )


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name}={value!r} must be a positive int")
    return value


def layer_working_sets(
    layer_io: Sequence[tuple[int, int]],
    *,
    n_params: int,
    batch_size: int,
    n_obs: int | None = None,
    bytes_per_datum: float | None = None,
    element_bytes: int = 4,
    optimizer_state: bool = False,
    ops_forward: float,
    ops_backward: float,
    source: str,
    measured: Sequence[str] = (),
    notes: Sequence[str] = (),
    widths: Sequence[int] | None = None,
    n_in: int | None = None,
) -> WorkingSets:
    """Working sets from per-layer (input, output) element counts per sample.

    This is the general form: ``t_l = e·B·(in_l + out_l)``, ``f = e·NTP`` replicated,
    ``b = 2e·NTP`` replicated (params + grads; + ``2e·NTP`` Adam moments with
    ``optimizer_state``) and ``e·B·(in_1 + Σ out_l) − max t_l`` distributed, ``d = n_obs ·
    bytes_per_datum``. For an MLP, ``in_1 + Σ out_l = Σ full`` and this is exactly the spec.

    Args:
        layer_io: per layer, (input elements, output elements) per sample.
        n_params: trainable parameters (NTP).
        batch_size: samples per batch.
        n_obs: samples in the dataset, None when unknown (then ``d`` is None).
        bytes_per_datum: bytes per sample of the dataset, None when unknown.
        element_bytes: bytes per element (4 = float32).
        optimizer_state: add Adam's two moment buffers to ``b`` (not in the paper; default off).
        ops_forward: operations per forward pass of one batch.
        ops_backward: operations per backward pass of one batch.
        source: ``"mlp"``, ``"torch"`` or ``"keras"``.
        measured: names of the sets that were measured.
        notes: caveats.
        widths: Dense widths when the model is an MLP.
        n_in: input width when known.
    """
    if not layer_io:
        raise ConfigurationError("layer_io=[] : a model needs at least one layer")
    b = _positive_int("batch_size", batch_size)
    e = _positive_int("element_bytes", element_bytes)
    ts = tuple(
        WorkingSet(f"t{l + 1}", 0, e * b * (int(i) + int(o))) for l, (i, o) in enumerate(layer_io)
    )
    max_t = max(t.distributed_bytes for t in ts)
    act = int(layer_io[0][0]) + sum(int(o) for _, o in layer_io)
    rep_b = 2 * e * n_params + (2 * e * n_params if optimizer_state else 0)
    d: WorkingSet | None = None
    if n_obs is not None and bytes_per_datum is not None:
        d = WorkingSet("d", 0, int(n_obs) * bytes_per_datum)
    return WorkingSets(
        inter_layer=ts,
        forward=WorkingSet("f", e * n_params, 0),
        backward=WorkingSet("b", rep_b, e * b * act - max_t),
        dataset=d,
        ops_forward=float(ops_forward),
        ops_backward=float(ops_backward),
        depth=len(layer_io),
        batch_size=b,
        ntp=int(n_params),
        element_bytes=e,
        source=source,
        measured=tuple(measured),
        notes=tuple(notes),
        widths=None if widths is None else tuple(int(w) for w in widths),
        n_in=n_in,
    )


def mlp_ops(full: Sequence[int], batch_size: int, n_params: int) -> tuple[int, int]:
    """Operation counts ``(o_f, o_b)`` of one batch through a Dense stack ``full``."""
    pairs = list(itertools.pairwise(full))
    o_f = batch_size * sum(i * o + o for i, o in pairs)
    o_b = batch_size * sum(
        2 * o + i * o + (0 if k == 0 else i * o) for k, (i, o) in enumerate(pairs)
    ) + n_params * (1 + batch_size)
    return o_f, o_b


def mlp_working_sets(
    widths: Sequence[int],
    n_in: int,
    batch_size: int,
    *,
    n_obs: int | None = None,
    bytes_per_datum: float | None = None,
    n_in_analysis: int | None = None,
    element_bytes: int = 4,
    optimizer_state: bool = False,
) -> WorkingSets:
    """The spec's working sets of a Dense MLP (section 3) and its operation counts (section 5).

    Args:
        widths: Dense widths, output included.
        n_in: real input width (for NTP).
        batch_size: samples per batch ``B``.
        n_obs: samples in the dataset (train + test); None = unknown (no ``d`` set).
        bytes_per_datum: dataset bytes per sample; default ``element_bytes·(n_in + n_out)``
            when ``n_obs`` is given.
        n_in_analysis: the input width used for working sets and FLOPs (the BUTTER analysis
            used the raw PMLB feature count; default ``n_in``).
        element_bytes: bytes per element (4 = float32; other dtypes are an extension).
        optimizer_state: add Adam moments ``2·e·NTP`` to ``b`` (not in the paper; default off).

    Returns:
        :class:`WorkingSets`.
    """
    if not widths or any(isinstance(w, bool) or int(w) != w or w < 1 for w in widths):
        raise ConfigurationError(f"widths={list(widths)!r} must be a non-empty list of positive ints")
    _positive_int("n_in", n_in)
    b = _positive_int("batch_size", batch_size)
    widths = [int(w) for w in widths]
    p = _ntp(n_in, widths)
    n_a = n_in if n_in_analysis is None else _positive_int("n_in_analysis", n_in_analysis)
    full = [n_a] + widths
    o_f, o_b = mlp_ops(full, b, p)
    if n_obs is not None and bytes_per_datum is None:
        bytes_per_datum = element_bytes * (n_in + widths[-1])
    return layer_working_sets(
        list(itertools.pairwise(full)),
        n_params=p,
        batch_size=b,
        n_obs=n_obs,
        bytes_per_datum=bytes_per_datum,
        element_bytes=element_bytes,
        optimizer_state=optimizer_state,
        ops_forward=o_f,
        ops_backward=o_b,
        source="mlp",
        widths=widths,
        n_in=n_in,
    )
