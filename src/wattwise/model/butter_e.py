"""Reproduce the BUTTER-E paper's predictions (Tripp et al. 2024).

Example:
    >>> from wattwise.model.butter_e import network_widths, predict_run
    >>> network_widths("rectangle", 3, 256, n_in=4, n_out=1)
    [13, 13, 1]
    >>> round(predict_run("529_pollen", "rectangle", 3, 256, "gpu") / 1000, 1)  # kJ, estimate
    369.6
"""

from __future__ import annotations

from typing import Any

from wattwise.errors import ConfigurationError
from wattwise.model._butter_e_datasets import DATASETS
from wattwise.model.coefficients import Coefficients, preset
from wattwise.model.energy import ModelOptions, PassFeatures, pass_features, predict, run_features
from wattwise.model.hierarchy import BUTTER_E_CPU, BUTTER_E_GPU, Hierarchy
from wattwise.model.shapes import network_widths
from wattwise.model.working_sets import WorkingSets, mlp_working_sets

__all__ = [
    "BATCH_SIZE",
    "DATASETS",
    "dataset_facts",
    "hierarchy_for",
    "network_widths",
    "predict_run",
    "run_feature_row",
    "run_working_sets",
]

BATCH_SIZE = 256
"""BUTTER-E trained every network with batch size 256 (and Adam, 3000 epochs, 80/20 split)."""


def dataset_facts(dataset: str) -> dict[str, Any]:
    """The per-dataset facts the package carries (see :mod:`wattwise.model._butter_e_datasets`)."""
    try:
        return dict(DATASETS[dataset])
    except KeyError:
        raise ConfigurationError(
            f"dataset={dataset!r} is not a BUTTER-E dataset wattwise knows; expected one of "
            f"{', '.join(sorted(DATASETS))}"
        ) from None


def hierarchy_for(hardware: str | Hierarchy) -> Hierarchy:
    """``"cpu"``/``"butter-e-cpu"`` or ``"gpu"``/``"butter-e-gpu"`` -> the paper's node."""
    if isinstance(hardware, Hierarchy):
        return hardware
    if hardware in ("cpu", "butter-e-cpu"):
        return BUTTER_E_CPU
    if hardware in ("gpu", "butter-e-gpu"):
        return BUTTER_E_GPU
    raise ConfigurationError(f"hardware={hardware!r}: expected 'cpu' or 'gpu'")


def run_working_sets(dataset: str, shape: str, depth: int, size: int) -> WorkingSets:
    """Working sets of a BUTTER-E run, with the analysis' quirk (raw PMLB feature count as the
    input width of working sets and FLOPs; widths and NTP from the real one-hot input)."""
    f = dataset_facts(dataset)
    widths = network_widths(shape, depth, size, f["n_in"], f["n_out"])
    return mlp_working_sets(
        widths, f["n_in"], BATCH_SIZE, n_obs=f["n_observations"],
        bytes_per_datum=f["bytes_per_datum"], n_in_analysis=f["n_features_pmlb"],
    )


def run_feature_row(
    dataset: str, shape: str, depth: int, size: int, hardware: str | Hierarchy,
    epochs: int = 3000, options: ModelOptions | None = None,
) -> tuple[float, ...]:
    """Feature row ``X`` (12 entries) of a BUTTER-E run; ``E = X·k``."""
    f = dataset_facts(dataset)
    pf: PassFeatures = pass_features(
        run_working_sets(dataset, shape, depth, size), hierarchy_for(hardware), options
    )
    return run_features(pf, epochs=epochs, train_batches=f["train_batches"],
                        test_batches=f["test_batches"])


def predict_run(
    dataset: str, shape: str, depth: int, size: int, hardware: str | Hierarchy,
    epochs: int = 3000, *, coefficients: Coefficients | None = None,
    options: ModelOptions | None = None,
) -> float:
    """Predicted joules (an estimate) of a BUTTER-E training run.

    Args:
        dataset: a BUTTER-E dataset name (e.g. ``"529_pollen"``).
        shape: network shape (``"rectangle"``, ``"trapezoid"``, ...).
        depth: layers incl. output.
        size: target parameter count.
        hardware: ``"cpu"`` or ``"gpu"`` (the paper's nodes) or a :class:`Hierarchy`.
        epochs: training epochs (BUTTER-E: 3000).
        coefficients: default the paper's preset for the hardware kind (``paper-cpu`` /
            ``paper-gpu``: this module reproduces the paper).
        options: model options.

    Returns:
        Predicted energy of the whole run, in joules.
    """
    h = hierarchy_for(hardware)
    k = coefficients or preset(f"paper-{h.kind}")
    return predict(run_feature_row(dataset, shape, depth, size, h, epochs, options), k)
