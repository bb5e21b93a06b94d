"""Helpers shared by the Keras callback tests (imported as a module: tests/keras is on sys.path)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

N_TRAIN = 10
N_VAL = 5
BATCH = 4


def tiny_model() -> Any:
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def arrays(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 3), dtype=np.float32), rng.random((n, 2), dtype=np.float32))
