"""The sizing check the callbacks make at training start, and coefficient files.

Example:
    >>> import torch
    >>> from wattwise.sizing import check_torch_model
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    >>> advice = check_torch_model(net, torch.zeros(4, 8), batch_size=32, hardware="butter-e-cpu")
    >>> advice.working_sets.widths
    (16, 2)
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattwise._warn import warn
from wattwise.errors import ConfigurationError, SizingWarning, WattwiseWarning
from wattwise.hardware import detect_hierarchy
from wattwise.introspect import start_step_recorder
from wattwise.model.advise import Advice, advise
from wattwise.model.coefficients import Coefficients
from wattwise.model.hierarchy import Hierarchy

if TYPE_CHECKING:
    from wattwise.introspect import StepRecorder

__all__ = [
    "record_advice",
    "check_keras_model",
    "check_torch_model",
    "start_step_recorder",
    "check_working_sets",
    "advice_json",
    "advice_text",
    "coefficients_label",
    "load_coefficients",
    "resolve_coefficients",
    "save_coefficients",
]


def load_coefficients(path: str | os.PathLike[str]) -> Coefficients:
    """Read a coefficients JSON file (written by ``wattwise fit`` or :func:`save_coefficients`).

    Raises:
        ConfigurationError: the file cannot be read, is not UTF-8 JSON, or is not a
            coefficients object (12 finite coefficients >= 0, ``hardware`` cpu or gpu); the
            message names the file and what is wrong.
    """
    where = f"coefficients={str(path)!r}"
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise ConfigurationError(
            f"{where}: cannot read ({e.strerror or e}); pass a file written by `wattwise fit --out`"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigurationError(
            f"{where}: not UTF-8 text ({e.reason} at byte {e.start}); pass a JSON file written "
            "by `wattwise fit --out`") from None
    except (json.JSONDecodeError, RecursionError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise ConfigurationError(f"{where}: not JSON ({why})") from None
    if isinstance(data, dict):
        for key, kind in (("fit_error", (int, float)), ("n_runs", int)):
            v = data.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, kind)):
                raise ConfigurationError(f"{where}: {key}={v!r:.60} is not a number")
    try:
        return Coefficients.from_json(data)  # checks the values: 12, finite, >= 0; cpu or gpu
    except ConfigurationError as e:
        raise ConfigurationError(f"{where}: {e}") from None


def save_coefficients(coefficients: Coefficients, path: str | os.PathLike[str]) -> Path:
    """Write coefficients as JSON; returns the path."""
    p = Path(path)
    p.write_text(json.dumps(coefficients.to_json(), indent=2) + "\n", encoding="utf-8")
    return p


def resolve_coefficients(
    coefficients: Coefficients | str | os.PathLike[str] | Mapping[str, Any] | None,
    hierarchy: Hierarchy,
) -> Coefficients:
    """None -> this machine's calibration (``wattwise calibrate``), else the preset for the
    hierarchy's kind (:func:`wattwise.calibration.choose_coefficients`); a path -> loaded; a
    dict -> parsed."""
    if coefficients is None:
        from wattwise.calibration import choose_coefficients

        return choose_coefficients(hierarchy)
    if isinstance(coefficients, Coefficients):
        c = coefficients
    elif isinstance(coefficients, (str, os.PathLike)):
        c = load_coefficients(coefficients)
    elif isinstance(coefficients, Mapping):
        c = Coefficients.from_json(coefficients)
    else:
        raise ConfigurationError(
            f"coefficients={coefficients!r}: expected None, a Coefficients, a JSON file path or dict"
        )
    if c.hardware != hierarchy.kind:
        warn(
            f"wattwise: coefficients fitted on {c.hardware!r} used for a {hierarchy.kind!r} "
            "hierarchy; predictions will be off", WattwiseWarning)
    return c


def check_working_sets(ws: Any, *, n_samples: int | None, hardware: Any, coefficients: Any,
                       **kw: Any) -> Advice:
    """Advice for already-computed working sets on ``hardware``."""
    h = detect_hierarchy(hardware) if not isinstance(hardware, Hierarchy) else hardware
    return advise(ws, h, resolve_coefficients(coefficients, h), n_samples=n_samples, **kw)


def check_torch_model(
    module: Any,
    batch: Any,
    *,
    batch_size: int,
    n_samples: int | None = None,
    hardware: str | Hierarchy = "auto",
    coefficients: Coefficients | str | os.PathLike[str] | None = None,
    step: StepRecorder | None = None,
) -> Advice:
    """Sizing advice for a torch model (or LightningModule) at training start.

    Runs ONE forward pass on ``batch`` in eval mode without gradients and restores the
    training mode. When that fails (no ``forward()``: a LightningModule that calls
    ``self.net(x)`` in ``training_step``; or a ``forward`` that does not take the batch input)
    and ``step`` recorded a real training step on ``batch``, the working sets come from that
    step instead (the advice notes it).

    Args:
        module: the model.
        batch: one real batch: tensor, ``(x, y)`` or dict.
        batch_size: the training batch size.
        n_samples: training samples per epoch, when known (adds the dataset set).
        hardware: ``"auto"``, ``"cpu"``, ``"gpu"``, ``"butter-e-cpu"``, ``"butter-e-gpu"`` or a
            :class:`~wattwise.model.hierarchy.Hierarchy`.
        coefficients: None (this machine's calibration, else the preset), a coefficients
            JSON path, or an object.
        step: a :class:`~wattwise.introspect.StepRecorder` that recorded the training step
            on ``batch`` (the fallback), or None.

    Returns:
        :class:`~wattwise.model.advise.Advice` (``.far``, ``.text()``, ``.to_json()``).

    Raises:
        ConfigurationError: no working sets could be measured; the message says why (both
            ways, with ``step``).
    """
    from wattwise.introspect import torch_working_sets

    _check_batch_size(batch_size)
    try:
        ws = torch_working_sets(module, batch, batch_size=batch_size, n_samples=n_samples)
        notes: tuple[str, ...] = ()
    except Exception as e:
        if step is None:
            raise
        why = f"{type(e).__name__}: {e}"
        try:
            ws = step.working_sets(batch, batch_size=batch_size, n_samples=n_samples)
        except Exception as e2:
            raise ConfigurationError(
                f"no working sets: one forward pass failed ({why}), and the recorded first "
                f"training step gave none either ({e2})") from e2
        notes = (f"working sets measured from the first training step (forward hooks on the leaf "
                 f"modules), because one forward pass failed: {why}",)
    return check_working_sets(ws, n_samples=n_samples, hardware=hardware,
                              coefficients=coefficients, notes=notes)


def check_keras_model(
    model: Any,
    batch: Any,
    *,
    batch_size: int,
    n_samples: int | None = None,
    hardware: str | Hierarchy = "auto",
    coefficients: Coefficients | str | os.PathLike[str] | None = None,
) -> Advice:
    """Sizing advice for a Keras 3 model at training start (see :func:`check_torch_model`)."""
    from wattwise.introspect import keras_working_sets

    _check_batch_size(batch_size)
    ws = keras_working_sets(model, batch, batch_size=batch_size, n_samples=n_samples)
    return check_working_sets(ws, n_samples=n_samples, hardware=hardware, coefficients=coefficients)


def _check_batch_size(batch_size: object) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigurationError(f"batch_size={batch_size!r} must be a positive int")


def coefficients_label(advice: Advice) -> dict[str, Any]:
    """Where the advice's coefficients come from: ``{"source", "calibrated", "label",
    "cv_error"}`` (:func:`wattwise.calibration.describe_coefficients`)."""
    from wattwise.calibration import describe_coefficients

    return describe_coefficients(advice.coefficients, advice.hierarchy)


def advice_json(advice: Advice) -> dict[str, Any]:
    """The advice's JSON form with the coefficients' provenance: ``coefficients`` gains
    ``calibrated`` (bool) and ``label`` (text)."""
    d = advice.to_json()
    info = coefficients_label(advice)
    coefs = dict(d.get("coefficients") or {})
    coefs.update(calibrated=info["calibrated"], label=info["label"])
    d["coefficients"] = coefs
    d["text"] = advice_text(advice, info)
    return d


def advice_text(advice: Advice, info: Mapping[str, Any] | None = None) -> str:
    """The advice's text with one more line saying whether its coefficients are calibrated
    on this machine."""
    info = coefficients_label(advice) if info is None else info
    return f"{advice.text()}\ncoefficients: {info['label']}"


def record_advice(tracker: Any, advice: Advice) -> None:
    """What both callbacks do with the advice at training start: put its JSON form in the run
    summary and, when the backward working set is far from every cache boundary, warn once
    (:class:`~wattwise.errors.SizingWarning`; also logged at INFO on the ``wattwise`` logger for
    logging setups - the warning is what prints)."""
    d = advice_json(advice)
    _record(tracker, advice.far, d)


def _record(tracker: Any, far: bool, d: dict[str, Any]) -> None:
    tracker.set_advice(d)
    if far:
        warn(d["text"], SizingWarning)
        import logging

        logging.getLogger("wattwise").info("%s", d["text"])


