"""Working sets measured from a real model (spec section 8).

From a ``torch.nn.Module`` (a LightningModule is one) or a Keras model: parameter bytes from the
model, per-layer input and output activation bytes from ONE forward pass on one real batch,
dataset bytes from ``n_samples`` when known. A Dense-only model (Linear/Dense layers and
elementwise activations) gives exactly the MLP working sets of the spec; any other model says
which sets were measured and that the coefficients were fitted on MLPs.

torch and keras are imported inside the functions only.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from wattwise.errors import ConfigurationError
from wattwise.model.working_sets import WorkingSets, layer_working_sets, mlp_working_sets

__all__ = ["first_input", "keras_working_sets", "torch_working_sets"]

_TORCH_ELEMENTWISE = (
    "ReLU", "ReLU6", "LeakyReLU", "PReLU", "ELU", "SELU", "CELU", "GELU", "SiLU", "Mish",
    "Sigmoid", "Tanh", "Softplus", "Softsign", "Hardtanh", "Hardsigmoid", "Hardswish",
    "Tanhshrink", "Identity", "Dropout", "AlphaDropout", "LogSigmoid", "Softmax", "LogSoftmax",
)
_KERAS_PASSIVE = ("InputLayer", "Activation", "Dropout", "ReLU", "LeakyReLU", "ELU", "PReLU",
                  "Softmax", "Identity")

MEASURED_NOTE = ("working sets measured from the model: parameters (f, b replicated) and per-layer "
                 "input+output activations of one forward pass (t_l, b distributed)")


def first_input(batch: Any) -> Any:
    """The model input of a batch: a tensor, the first element of a tuple/list ``(x, y)``, or
    the first value of a dict (``"x"``/``"input"``/``"inputs"``/``"features"`` preferred)."""
    if isinstance(batch, dict):
        for key in ("x", "input", "inputs", "features"):
            if key in batch:
                return batch[key]
        if not batch:
            raise ConfigurationError("batch={}: an empty dict has no model input")
        return next(iter(batch.values()))
    if isinstance(batch, (tuple, list)):
        if not batch:
            raise ConfigurationError(f"batch={batch!r}: an empty sequence has no model input")
        return batch[0]
    return batch


def _dataset_args(n_samples: int | None, bytes_per_datum: float | None) -> tuple[int | None, float | None]:
    if n_samples is None:
        return None, None
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ConfigurationError(f"n_samples={n_samples!r} must be a positive int or None")
    return n_samples, bytes_per_datum


def torch_working_sets(
    module: Any,
    batch: Any,
    *,
    batch_size: int,
    n_samples: int | None = None,
    bytes_per_datum: float | None = None,
    optimizer_state: bool = False,
) -> WorkingSets:
    """Working sets of a ``torch.nn.Module`` from one forward pass on ``batch``.

    The module's training mode is restored and no gradients are recorded; parameters are not
    changed.

    Args:
        module: the model (``nn.Module`` or ``LightningModule``).
        batch: a tensor, ``(x, y)`` or a dict; the model input is taken from it.
        batch_size: training batch size ``B`` (the batch given may be smaller).
        n_samples: training samples per epoch (dataset set ``d``); None = unknown.
        bytes_per_datum: dataset bytes per sample; default measured from the batch (Dense-only
            models: ``element_bytes·(n_in + n_out)``, the spec's).
        optimizer_state: add Adam's moments to ``b``.
    """
    import torch

    if not isinstance(module, torch.nn.Module):
        raise ConfigurationError(
            f"module={type(module).__name__!r} is not a torch.nn.Module; pass the model "
            "(for Keras use check_keras_model)"
        )
    x = first_input(batch)
    if not isinstance(x, torch.Tensor):
        raise ConfigurationError(
            f"batch input is a {type(x).__name__!r}, expected a torch.Tensor (or (x, y) / dict)"
        )
    n_obs, bpd = _dataset_args(n_samples, bytes_per_datum)
    n_batch = int(x.shape[0]) if x.dim() > 0 else 1
    params = [p for p in module.parameters() if p.requires_grad]
    n_params = int(sum(p.numel() for p in params))
    elem = int(params[0].element_size()) if params else int(x.element_size())
    leaves = [m for m in module.modules() if not any(True for _ in m.children())]
    records: list[tuple[Any, int, int]] = []

    def numel(t: Any) -> int:
        if isinstance(t, torch.Tensor):
            return int(t.numel())
        if isinstance(t, (tuple, list)):
            return sum(numel(v) for v in t)
        if isinstance(t, dict):
            return sum(numel(v) for v in t.values())
        return 0

    def hook(m: Any, inp: Any, out: Any) -> None:
        records.append((m, numel(inp), numel(out)))

    handles = [m.register_forward_hook(hook) for m in leaves]
    modes = {m: m.training for m in module.modules()}
    try:
        module.eval()
        with torch.no_grad():
            y = module(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    if not records:
        raise ConfigurationError(
            f"module {type(module).__name__!r} ran no submodule in its forward pass; wattwise "
            "needs at least one layer to measure working sets"
        )
    linear_types = (torch.nn.Linear,)
    kinds = {type(m).__name__ for m, _, _ in records}
    linears = [m for m, _, _ in records if isinstance(m, linear_types)]
    dense_only = bool(linears) and all(
        isinstance(m, linear_types) or type(m).__name__ in _TORCH_ELEMENTWISE for m, _, _ in records
    ) and all(a.out_features == b.in_features for a, b in itertools.pairwise(linears)) and \
        len(set(map(id, linears))) == len(linears) and \
        sum(sum(p.numel() for p in m.parameters()) for m in linears) == n_params
    if dense_only:
        widths = [int(m.out_features) for m in linears]
        return mlp_working_sets(widths, int(linears[0].in_features), batch_size, n_obs=n_obs,
                                bytes_per_datum=bpd, element_bytes=elem,
                                optimizer_state=optimizer_state)
    # general model: measured per-layer activations, per sample
    layer_io = [(max(1, round(i / n_batch)), max(1, round(o / n_batch))) for _, i, o in records]
    o_f = 0.0
    for m, _, o in records:
        out_ps = o / n_batch
        if isinstance(m, torch.nn.Linear):
            o_f += out_ps / m.out_features * (m.in_features * m.out_features + m.out_features)
        elif isinstance(m, torch.nn.modules.conv._ConvNd):
            o_f += out_ps * (m.weight[0].numel() + (1 if m.bias is not None else 0))
        else:
            o_f += sum(p.numel() for p in m.parameters(recurse=False))
    o_f *= batch_size
    o_b = 2 * o_f + n_params * (1 + batch_size)
    if n_obs is not None and bpd is None:
        bpd = (x.element_size() * x.numel() / n_batch) + numel(y) * elem / n_batch
    return layer_working_sets(
        layer_io, n_params=n_params, batch_size=batch_size, n_obs=n_obs, bytes_per_datum=bpd,
        element_bytes=elem, optimizer_state=optimizer_state, ops_forward=o_f, ops_backward=o_b,
        source="torch", measured=("t", "f", "b") + (("d",) if n_obs is not None else ()),
        notes=(MEASURED_NOTE + f"; layer types: {', '.join(sorted(kinds))}",
               "operation counts are estimates (Linear/Conv exact MACs, other layers ~params)"),
        n_in=None,
    )


def keras_working_sets(
    model: Any,
    batch: Any,
    *,
    batch_size: int,
    n_samples: int | None = None,
    bytes_per_datum: float | None = None,
    optimizer_state: bool = False,
) -> WorkingSets:
    """Working sets of a Keras 3 model from one forward pass on ``batch`` (layers run one by
    one for a Sequential model, intermediate outputs for a functional one; ``training=False``).

    Args: as :func:`torch_working_sets`.
    """
    import keras
    import numpy as np

    if not isinstance(model, keras.Model):
        raise ConfigurationError(
            f"model={type(model).__name__!r} is not a keras.Model; pass the model "
            "(for torch use check_torch_model)"
        )
    x = first_input(batch)
    n_obs, bpd = _dataset_args(n_samples, bytes_per_datum)
    shape = tuple(int(d) for d in np.shape(keras.ops.convert_to_numpy(x)))
    n_batch = shape[0] if shape else 1
    if not model.built:
        model(x, training=False)
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    params = model.trainable_weights
    n_params = int(sum(int(np.prod(w.shape)) for w in params))
    elem = int(np.dtype(params[0].dtype).itemsize) if params else 4
    dense = [l for l in layers if isinstance(l, keras.layers.Dense)]
    dense_only = bool(dense) and all(
        isinstance(l, keras.layers.Dense) or type(l).__name__ in _KERAS_PASSIVE for l in layers
    ) and len(shape) == 2 and all(
        int(a.units) == int(b.kernel.shape[0]) for a, b in itertools.pairwise(dense)
    ) and sum(int(np.prod(w.shape)) for l in dense for w in l.trainable_weights) == n_params \
        and all(l.use_bias for l in dense)
    if dense_only:
        widths = [int(l.units) for l in dense]
        return mlp_working_sets(widths, int(dense[0].kernel.shape[0]), batch_size, n_obs=n_obs,
                                bytes_per_datum=bpd, element_bytes=elem,
                                optimizer_state=optimizer_state)
    records: list[tuple[Any, int, int]] = []
    if isinstance(model, keras.Sequential):
        h = x
        for l in layers:
            out = l(h, training=False)
            records.append((l, int(np.prod(np.shape(h))), int(np.prod(np.shape(out)))))
            h = out
    else:
        try:
            probe = keras.Model(model.inputs, [l.output for l in layers])
            outs = probe(x, training=False)
        except Exception as e:
            raise ConfigurationError(
                f"keras model {model.name!r}: cannot read per-layer activations ({e}); "
                "use a Sequential or functional model"
            ) from e
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for l, out in zip(layers, outs):
            ins = l.input
            in_ps = sum(int(math.prod(d for d in t.shape[1:] if d)) for t in
                        (ins if isinstance(ins, (list, tuple)) else [ins]))
            records.append((l, in_ps * n_batch, int(np.prod(np.shape(out)))))
    layer_io = [(max(1, round(i / n_batch)), max(1, round(o / n_batch))) for _, i, o in records]
    o_f = 0.0
    for l, _, o in records:
        k = sum(int(np.prod(w.shape)) for w in l.trainable_weights)
        if isinstance(l, keras.layers.Dense):
            o_f += (o / n_batch) / l.units * k
        elif "Conv" in type(l).__name__ and getattr(l, "filters", None):
            o_f += (o / n_batch) / l.filters * k
        else:
            o_f += k
    o_f *= batch_size
    o_b = 2 * o_f + n_params * (1 + batch_size)
    if n_obs is not None and bpd is None:
        bpd = elem * (math.prod(shape[1:]) + records[-1][2] / n_batch)
    kinds = sorted({type(l).__name__ for l, _, _ in records})
    return layer_working_sets(
        layer_io, n_params=n_params, batch_size=batch_size, n_obs=n_obs, bytes_per_datum=bpd,
        element_bytes=elem, optimizer_state=optimizer_state, ops_forward=o_f, ops_backward=o_b,
        source="keras", measured=("t", "f", "b") + (("d",) if n_obs is not None else ()),
        notes=(MEASURED_NOTE + f"; layer types: {', '.join(kinds)}",
               "operation counts are estimates (Dense/Conv exact MACs, other layers ~params)"),
    )


