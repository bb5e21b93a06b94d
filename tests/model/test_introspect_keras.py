"""Working sets measured from real Keras models (run once per Keras backend by tox)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.keras

keras = pytest.importorskip("keras")
if not hasattr(keras, "Sequential"):  # tests/keras seen as a namespace package: no Keras here
    pytest.skip("Keras is not installed", allow_module_level=True)

from wattwise.introspect import keras_working_sets
from wattwise.model.working_sets import mlp_working_sets
from wattwise.sizing import check_keras_model


def test_dense_only_keras_model_equals_mlp_working_sets():
    model = keras.Sequential([
        keras.Input((20,)),
        keras.layers.Dense(32, activation="relu"),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(16, activation="tanh"),
        keras.layers.Dense(3),
    ])
    x = np.random.default_rng(0).normal(size=(5, 20)).astype("float32")
    ws = keras_working_sets(model, (x, np.zeros(5)), batch_size=64, n_samples=1000)
    assert ws == mlp_working_sets([32, 16, 3], 20, 64, n_obs=1000)


def test_keras_conv_model_is_measured():
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3),
        keras.layers.Flatten(),
        keras.layers.Dense(5),
    ])
    x = np.zeros((2, 8, 8, 1), dtype="float32")
    a = check_keras_model(model, x, batch_size=32, n_samples=100, hardware="butter-e-cpu")
    ws = a.working_sets
    assert ws.source == "keras" and ws.ntp == model.count_params()
    assert ws.inter_layer[0].distributed_bytes == 4 * 32 * (64 + 4 * 6 * 6)
    assert any("fitted on dense MLPs" in n for n in a.notes)
