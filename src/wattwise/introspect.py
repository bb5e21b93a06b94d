"""Working sets measured from a real model (spec section 8).

From a ``torch.nn.Module`` (a LightningModule is one) or a Keras model: parameter bytes from the
model, per-layer input and output activation bytes from ONE forward pass on one real batch,
dataset bytes from ``n_samples`` when known. A torch model without a usable ``forward()`` (a
LightningModule calling ``self.net(x)`` in ``training_step``) is measured from its first real
training step instead: :class:`StepRecorder` puts the same forward hooks on the leaf modules
around that step, and gives the same working sets for a model whose ``forward()`` works. A Dense-only model (Linear/Dense layers and
elementwise activations) gives exactly the MLP working sets of the spec; any other model says
which sets were measured and that the coefficients were fitted on MLPs.

torch and keras are imported inside the functions only.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

from wattwise._record import record
from wattwise.errors import ConfigurationError
from wattwise.model.working_sets import WorkingSets, layer_working_sets, mlp_working_sets

__all__ = [
    "StepRecorder",
    "deferred_advice",
    "deferred_torch_advice",
    "first_input",
    "keras_working_sets",
    "start_step_recorder",
    "torch_working_sets",
]

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


@record
class _Options:
    """The working-set options both frameworks take (see :func:`torch_working_sets`)."""

    batch_size: int
    n_obs: int | None
    bytes_per_datum: float | None
    optimizer_state: bool

    @classmethod
    def of(cls, batch_size: int, n_samples: int | None, bytes_per_datum: float | None,
           optimizer_state: bool) -> _Options:
        if n_samples is None:
            return cls(batch_size, None, None, optimizer_state)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ConfigurationError(f"n_samples={n_samples!r} must be a positive int or None")
        return cls(batch_size, n_samples, bytes_per_datum, optimizer_state)

    def mlp(self, widths: list[int], n_in: int, element_bytes: int) -> WorkingSets:
        """The spec's MLP working sets (a Dense-only model)."""
        return mlp_working_sets(widths, n_in, self.batch_size, n_obs=self.n_obs,
                                bytes_per_datum=self.bytes_per_datum, element_bytes=element_bytes,
                                optimizer_state=self.optimizer_state)

    def measured(
        self,
        records: Sequence[tuple[Any, int, int]],
        macs: Callable[[Any, float], float],
        *,
        n_batch: int,
        n_params: int,
        element_bytes: int,
        bytes_per_datum: Callable[[], float],
        source: str,
        exact: str,
    ) -> WorkingSets:
        """Working sets of a general model from its per-layer (layer, input elements, output
        elements) records of one batch of ``n_batch``; ``macs(layer, outputs per sample)``
        estimates a layer's multiply-accumulates per sample (``exact`` names the layer types
        it counts exactly); ``bytes_per_datum()`` is called when the dataset size is known and
        no bytes per datum were given."""
        layer_io = [(max(1, round(i / n_batch)), max(1, round(o / n_batch))) for _, i, o in records]
        o_f = sum(macs(layer, o / n_batch) for layer, _, o in records) * self.batch_size
        o_b = 2 * o_f + n_params * (1 + self.batch_size)
        bpd = self.bytes_per_datum
        if self.n_obs is not None and bpd is None:
            bpd = bytes_per_datum()
        kinds = sorted({type(layer).__name__ for layer, _, _ in records})
        return layer_working_sets(
            layer_io, n_params=n_params, batch_size=self.batch_size, n_obs=self.n_obs,
            bytes_per_datum=bpd, element_bytes=element_bytes,
            optimizer_state=self.optimizer_state, ops_forward=o_f, ops_backward=o_b,
            source=source, measured=("t", "f", "b") + (("d",) if self.n_obs is not None else ()),
            notes=(MEASURED_NOTE + f"; layer types: {', '.join(kinds)}",
                   f"operation counts are estimates ({exact} exact MACs, other layers ~params)"),
            n_in=None,
        )


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
    opts = _Options.of(batch_size, n_samples, bytes_per_datum, optimizer_state)
    n_batch = int(x.shape[0]) if x.dim() > 0 else 1
    records, y = _torch_records(module, x)
    return _torch_from_records(module, records, opts, n_batch=n_batch,
                               input_bytes=x.element_size() * x.numel(), output_elements=_numel(y))


def _torch_from_records(module: Any, records: list[tuple[Any, int, int]], opts: _Options, *,
                        n_batch: int, input_bytes: float, output_elements: int) -> WorkingSets:
    """Working sets from the (leaf, input elements, output elements) records of one batch of
    ``n_batch`` samples; ``input_bytes`` and ``output_elements`` of the whole batch."""
    import torch

    params = [p for p in module.parameters() if p.requires_grad]
    n_params = int(sum(p.numel() for p in params))
    elem = int(params[0].element_size()) if params else 4
    linears = [m for m, _, _ in records if isinstance(m, torch.nn.Linear)]
    if _torch_dense_only(records, linears, n_params):
        widths = [int(m.out_features) for m in linears]
        return opts.mlp(widths, int(linears[0].in_features), elem)
    return opts.measured(
        records, _torch_macs, n_batch=n_batch, n_params=n_params, element_bytes=elem,
        bytes_per_datum=lambda: input_bytes / n_batch + output_elements * elem / n_batch,
        source="torch", exact="Linear/Conv",
    )


class StepRecorder:
    """Forward hooks on a torch model's leaf modules for one real training step.

    :meth:`start` before the step registers them, :meth:`stop` after it removes them (both are
    safe to call twice); the hooks record each leaf's input and output element counts exactly as
    the one-forward-pass path does (losses and metrics modules left out, as a ``forward()``
    would not call them). :meth:`working_sets` then gives the working sets, for a model that has
    no usable ``forward()``.

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        >>> rec = StepRecorder(net)
        >>> rec.start()
        >>> net(torch.zeros(4, 8)).sum().backward()
        >>> rec.stop()
        >>> rec.working_sets(torch.zeros(4, 8), batch_size=4).widths
        (16, 2)
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.records: list[tuple[Any, int, int]] = []
        self._handles: list[Any] = []

    def start(self) -> None:
        """Register the hooks (and forget earlier records)."""
        self.stop()
        self.records = []

        def hook(m: Any, inp: Any, out: Any) -> None:
            self.records.append((m, _numel(inp), _numel(out)))

        self._handles = [m.register_forward_hook(hook) for m in _torch_leaves(self.module)]

    def stop(self) -> None:
        """Remove the hooks."""
        for h in self._handles:
            h.remove()
        self._handles = []

    def working_sets(
        self,
        batch: Any,
        *,
        batch_size: int,
        n_samples: int | None = None,
        bytes_per_datum: float | None = None,
        optimizer_state: bool = False,
    ) -> WorkingSets:
        """The working sets from the recorded step (arguments as :func:`torch_working_sets`;
        ``batch`` is the step's batch, ``batch_size`` its samples)."""
        if not self.records:
            raise ConfigurationError(
                f"module {type(self.module).__name__!r} ran no submodule in the recorded training "
                "step; wattwise needs at least one layer to measure working sets"
            )
        opts = _Options.of(batch_size, n_samples, bytes_per_datum, optimizer_state)
        try:
            x = first_input(batch)
        except ConfigurationError:
            x = None
        import torch

        if isinstance(x, torch.Tensor) and x.dim() > 0:
            n_batch, input_bytes = int(x.shape[0]), float(x.element_size() * x.numel())
        else:  # the input of the first layer that ran
            n_batch, input_bytes = batch_size, 4.0 * self.records[0][1]
        return _torch_from_records(self.module, self.records, opts, n_batch=n_batch,
                                   input_bytes=input_bytes, output_elements=self.records[-1][2])


def _numel(t: Any) -> int:
    """Elements of a tensor, or of the tensors in a (nested) tuple, list or dict."""
    import torch

    if isinstance(t, torch.Tensor):
        return int(t.numel())
    if isinstance(t, (tuple, list)):
        return sum(_numel(v) for v in t)
    if isinstance(t, dict):
        return sum(_numel(v) for v in t.values())
    return 0


def _torch_records(module: Any, x: Any) -> tuple[list[tuple[Any, int, int]], Any]:
    """(leaf module, input elements, output elements) of every leaf that ran in one forward
    pass in eval mode without gradients, and the output; training modes are restored."""
    import torch

    leaves = _torch_leaves(module)
    records: list[tuple[Any, int, int]] = []

    def hook(m: Any, inp: Any, out: Any) -> None:
        records.append((m, _numel(inp), _numel(out)))

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
    return records, y


def _torch_leaves(module: Any) -> list[Any]:
    """The leaf modules of ``module`` that are layers: losses and torchmetrics metrics left out
    (a training step calls them; a forward pass does not)."""
    import torch

    return [m for m in module.modules() if not any(True for _ in m.children())
            and not isinstance(m, torch.nn.modules.loss._Loss)
            and not type(m).__module__.startswith("torchmetrics")]


def _torch_dense_only(records: list[tuple[Any, int, int]], linears: list[Any], n_params: int) -> bool:
    """Only Linear layers (each used once, chained) and elementwise layers, holding every
    trainable parameter: the model is the spec's MLP."""
    import torch

    return bool(linears) and all(
        isinstance(m, torch.nn.Linear) or type(m).__name__ in _TORCH_ELEMENTWISE
        for m, _, _ in records
    ) and all(a.out_features == b.in_features for a, b in itertools.pairwise(linears)) and \
        len(set(map(id, linears))) == len(linears) and \
        sum(sum(p.numel() for p in m.parameters()) for m in linears) == n_params


def _torch_macs(m: Any, out_per_sample: float) -> float:
    import torch

    if isinstance(m, torch.nn.Linear):
        return float(out_per_sample / m.out_features * (m.in_features * m.out_features + m.out_features))
    if isinstance(m, torch.nn.modules.conv._ConvNd):
        return float(out_per_sample * (m.weight[0].numel() + (1 if m.bias is not None else 0)))
    return float(sum(p.numel() for p in m.parameters(recurse=False)))


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
    opts = _Options.of(batch_size, n_samples, bytes_per_datum, optimizer_state)
    shape = tuple(int(d) for d in np.shape(keras.ops.convert_to_numpy(x)))
    n_batch = shape[0] if shape else 1
    if not model.built:
        model(x, training=False)
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    params = model.trainable_weights
    n_params = int(sum(int(np.prod(w.shape)) for w in params))
    elem = int(np.dtype(params[0].dtype).itemsize) if params else 4
    dense = [l for l in layers if isinstance(l, keras.layers.Dense)]
    if _keras_dense_only(layers, dense, n_params) and len(shape) == 2:
        return opts.mlp([int(l.units) for l in dense], int(dense[0].kernel.shape[0]), elem)
    records = _keras_records(model, layers, x, n_batch)
    return opts.measured(
        records, _keras_macs, n_batch=n_batch, n_params=n_params, element_bytes=elem,
        bytes_per_datum=lambda: elem * (math.prod(shape[1:]) + records[-1][2] / n_batch),
        source="keras", exact="Dense/Conv",
    )


def _keras_dense_only(layers: list[Any], dense: list[Any], n_params: int) -> bool:
    """Only Dense layers with bias (chained) and passive layers, holding every trainable
    parameter: the model is the spec's MLP."""
    import keras
    import numpy as np

    return bool(dense) and all(
        isinstance(l, keras.layers.Dense) or type(l).__name__ in _KERAS_PASSIVE for l in layers
    ) and all(
        int(a.units) == int(b.kernel.shape[0]) for a, b in itertools.pairwise(dense)
    ) and sum(int(np.prod(w.shape)) for l in dense for w in l.trainable_weights) == n_params \
        and all(l.use_bias for l in dense)


def _keras_records(model: Any, layers: list[Any], x: Any, n_batch: int) -> list[tuple[Any, int, int]]:
    """(layer, input elements, output elements) of every layer for one batch."""
    import keras
    import numpy as np

    records: list[tuple[Any, int, int]] = []
    if isinstance(model, keras.Sequential):
        h = x
        for l in layers:
            out = l(h, training=False)
            records.append((l, int(np.prod(np.shape(h))), int(np.prod(np.shape(out)))))
            h = out
        return records
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
    return records


def _keras_macs(l: Any, out_per_sample: float) -> float:
    import keras
    import numpy as np

    k = sum(int(np.prod(w.shape)) for w in l.trainable_weights)
    if isinstance(l, keras.layers.Dense):
        return float(out_per_sample / l.units * k)
    if "Conv" in type(l).__name__ and getattr(l, "filters", None):
        return float(out_per_sample / l.filters * k)
    return float(k)


def deferred_torch_advice(
    tracker: Any,
    module: Any,
    batch: Any,
    *,
    batch_size: int,
    n_samples: int | None = None,
    hardware: Any = "auto",
    coefficients: Any = None,
    step: StepRecorder | None = None,
) -> Any:
    """The callbacks' sizing check, off the critical path: for
    :meth:`~wattwise.tracker.EnergyTracker.check_advice`.

    On the training thread only the working sets are taken: from ``step`` (the first real
    training step, recorded by forward hooks: no extra forward pass) when it recorded one, else
    from one forward pass on ``batch``. The model (:func:`check_working_sets`: hierarchy,
    coefficients, options, and importing :mod:`wattwise.sizing` with the whole model) runs on a
    daemon thread; the advice is recorded (:func:`wattwise.sizing.record_advice`) back on the
    training thread at the next epoch end.

    Returns:
        a :class:`wattwise.run.Deferred`.

    Raises:
        ConfigurationError: no working sets could be measured (the tracker records why).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size={batch_size!r} must be a positive int")
    ws = None
    notes: tuple[str, ...] = ()
    step_error = None
    if step is not None:
        try:
            ws = step.working_sets(batch, batch_size=batch_size, n_samples=n_samples)
            notes = ("working sets measured from the first training step (forward hooks on the "
                     "leaf modules; no extra forward pass)",)
        except Exception as e:  # noqa: BLE001 - the forward pass below is the other way
            step_error = e
    if ws is None:
        try:
            ws = torch_working_sets(module, batch, batch_size=batch_size, n_samples=n_samples)
        except Exception as e:
            if step_error is None:
                raise
            raise ConfigurationError(
                f"no working sets: the recorded first training step gave none ({step_error}), "
                f"and one forward pass failed ({type(e).__name__}: {e})") from e

    return deferred_advice(tracker, ws, n_samples=n_samples, hardware=hardware,
                           coefficients=coefficients, notes=notes)


def deferred_advice(tracker: Any, ws: WorkingSets, *, n_samples: int | None,
                    hardware: Any, coefficients: Any,
                    notes: tuple[str, ...] = ()) -> Any:
    """A :class:`wattwise.run.Deferred` that runs :func:`wattwise.sizing.check_working_sets`
    on a daemon thread and records the advice back on the training thread."""
    from wattwise.run import Deferred

    def compute() -> tuple[bool, dict[str, Any]]:  # the model, the labels and the text
        from wattwise import sizing

        advice = sizing.check_working_sets(ws, n_samples=n_samples, hardware=hardware,
                                           coefficients=coefficients, notes=notes)
        return advice.far, sizing.advice_json(advice)

    def finish(result: tuple[bool, dict[str, Any]]) -> None:
        from wattwise.sizing import _record

        _record(tracker, *result)

    return Deferred(compute, finish)


def start_step_recorder(module: Any) -> StepRecorder | None:
    """A :class:`~wattwise.introspect.StepRecorder` with its hooks on ``module``'s leaves, for
    the callbacks to call right before the first training batch (None when the hooks cannot be
    registered: the forward-pass path is then the only one; never raises)."""
    try:
        rec = StepRecorder(module)
        rec.start()
    except Exception:  # noqa: BLE001 - the fallback is optional; the advice never breaks training
        return None
    return rec
