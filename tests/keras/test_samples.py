"""Samples per epoch for every input type Keras accepts, including the last partial batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from wattwise_keras_helpers import BATCH, N_TRAIN, N_VAL, arrays, tiny_model

from wattwise.errors import ConfigurationError
from wattwise.testing import FakeMeter

keras = pytest.importorskip("keras")
from wattwise.keras import EnergyMonitor
from wattwise.keras_data import SamplePlan

pytestmark = pytest.mark.keras


def _run(x: Any, tmp_path: Path, *, y: Any = None, epochs: int = 1, mon_kw: Any = None,
         **fit_kw: Any) -> dict[str, Any]:
    path = tmp_path / "run.json"
    mon = EnergyMonitor([FakeMeter(joules_per_read=1.0)], print_summary=False,
                        summary_path=path, **(mon_kw or {}))
    tiny_model().fit(x, y, epochs=epochs, verbose=0, callbacks=[mon], **fit_kw)
    return json.loads(path.read_text())


def _samples(summary: dict[str, Any], phase: str = "train") -> list[int]:
    return [ep["phases"][phase]["samples"] for ep in summary["epochs"]]


def _batches(summary: dict[str, Any], phase: str = "train") -> list[int]:
    return [ep["phases"][phase]["batches"] for ep in summary["epochs"]]


class Batches(keras.utils.PyDataset):
    def __init__(self, n: int, batch: int = BATCH, **kw: Any) -> None:
        super().__init__(**kw)
        self.x, self.y = arrays(n)
        self.batch = batch

    def __len__(self) -> int:
        return (len(self.x) + self.batch - 1) // self.batch

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        s = slice(i * self.batch, (i + 1) * self.batch)
        return self.x[s], self.y[s]


def _gen(n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    x, y = arrays(n)
    while True:
        for i in range(0, n, BATCH):
            yield x[i:i + BATCH], y[i:i + BATCH]


def test_numpy_arrays_with_partial_batch(tmp_path: Path) -> None:
    x, y = arrays(N_TRAIN)
    s = _run(x, tmp_path, y=y, batch_size=BATCH, epochs=2)
    assert _samples(s) == [10, 10] and _batches(s) == [3, 3]


def test_numpy_validation_split(tmp_path: Path) -> None:
    x, y = arrays(N_TRAIN)
    s = _run(x, tmp_path, y=y, batch_size=BATCH, validation_split=0.3)
    assert _samples(s) == [7] and _samples(s, "validate") == [3]


def test_validation_batch_size(tmp_path: Path) -> None:
    x, y = arrays(N_TRAIN)
    vx, vy = arrays(N_VAL)
    s = _run(x, tmp_path, y=y, batch_size=BATCH, validation_data=(vx, vy),
             validation_batch_size=2)
    assert _samples(s, "validate") == [5] and _batches(s, "validate") == [3]


def test_steps_per_epoch_places_the_partial_batch(tmp_path: Path) -> None:
    # 3 batches (4, 4, 2) per pass, 2 steps per epoch: Keras runs 4+4, then 2 (the pass ends
    # early), then 4+4.
    x, y = arrays(N_TRAIN)
    with pytest.warns(UserWarning, match="ran out of data"):
        s = _run(x, tmp_path, y=y, batch_size=BATCH, steps_per_epoch=2, epochs=3)
    assert _samples(s) == [8, 2, 8]
    assert _batches(s) == [2, 1, 2]


def test_tf_dataset_dynamic_batch(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    x, y = arrays(N_TRAIN)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH).prefetch(2)
    vds = (tf.data.Dataset.from_tensor_slices(arrays(N_VAL)).map(lambda a, b: (a, b))
           .batch(BATCH).shuffle(2).cache())
    s = _run(ds, tmp_path, validation_data=vds, epochs=2)
    assert _samples(s) == [10, 10] and _samples(s, "validate") == [5, 5]


def test_tf_dataset_drop_remainder(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices(arrays(N_TRAIN)).batch(BATCH, drop_remainder=True)
    s = _run(ds, tmp_path)
    assert _samples(s) == [8] and _batches(s) == [2]


def test_tf_dataset_unknown_needs_options(tmp_path: Path) -> None:
    tf = pytest.importorskip("tensorflow")
    ds = tf.data.Dataset.from_tensor_slices(arrays(N_TRAIN)).batch(BATCH).filter(
        lambda a, b: True)
    with pytest.raises(ConfigurationError, match="samples_per_epoch") as info:
        _run(ds, tmp_path)
    assert "batch_size" in str(info.value)
    s = _run(ds, tmp_path, mon_kw={"samples_per_epoch": N_TRAIN})
    assert _samples(s) == [10]


def test_py_dataset(tmp_path: Path) -> None:
    s = _run(Batches(N_TRAIN), tmp_path, validation_data=Batches(N_VAL), epochs=2)
    assert _samples(s) == [10, 10] and _batches(s) == [3, 3]
    assert _samples(s, "validate") == [5, 5]


def test_generator_needs_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"samples_per_epoch=.*batch_size="):
        _run(_gen(N_TRAIN), tmp_path, steps_per_epoch=3)


def test_generator_with_samples_per_epoch(tmp_path: Path) -> None:
    s = _run(_gen(N_TRAIN), tmp_path, steps_per_epoch=3, epochs=2,
             mon_kw={"samples_per_epoch": N_TRAIN})
    assert _samples(s) == [10, 10] and _batches(s) == [3, 3]


def test_generator_with_batch_size_counts_full_batches(tmp_path: Path) -> None:
    def full() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        x, y = arrays(8)
        while True:
            yield x[:4], y[:4]
            yield x[4:], y[4:]

    s = _run(full(), tmp_path, steps_per_epoch=2, mon_kw={"batch_size": 4})
    assert _samples(s) == [8]


def test_generator_validation_without_options_warns(tmp_path: Path) -> None:
    x, y = arrays(N_TRAIN)

    def vgen() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        vx, vy = arrays(N_VAL)
        yield vx[:4], vy[:4]
        yield vx[4:], vy[4:]

    with pytest.warns(UserWarning, match="validation_samples"):
        s = _run(x, tmp_path, y=y, batch_size=BATCH, validation_data=vgen())
    val = s["epochs"][0]["phases"]["validate"]
    assert val["joules"] == 1.0 and val["joules_per_sample"] is None  # unknown, never 0


def test_torch_dataloader(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = arrays(N_TRAIN)
    dl = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH)
    vx, vy = arrays(N_VAL)
    vdl = DataLoader(TensorDataset(torch.from_numpy(vx), torch.from_numpy(vy)), batch_size=BATCH)
    s = _run(dl, tmp_path, validation_data=vdl, epochs=2)
    assert _samples(s) == [10, 10] and _batches(s) == [3, 3]
    assert _samples(s, "validate") == [5, 5]


def test_torch_dataloader_drop_last(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from torch.utils.data import DataLoader, TensorDataset

    x, y = arrays(N_TRAIN)
    dl = DataLoader(TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=BATCH,
                    drop_last=True)
    s = _run(dl, tmp_path)
    assert _samples(s) == [8]


def test_sample_plan_cursor() -> None:
    plan = SamplePlan(batch_size=4, num_batches=3, last_batch_size=2, source="test")
    assert plan.take(2) == [4, 4]
    assert plan.take(2) == [2, 4]
    assert plan.take(3) == [4, 2, 4]
    fixed = SamplePlan(batch_size=1, num_batches=None, last_batch_size=1, source="t",
                       epoch_samples=10)
    assert fixed.take(3) == [4, 3, 3] and sum(fixed.take(4)) == 10


def test_custom_loop_without_fit_needs_options() -> None:
    mon = EnergyMonitor([FakeMeter(joules_per_read=1.0)], print_summary=False)
    model = tiny_model()
    cbs = keras.callbacks.CallbackList([mon], model=model, epochs=1, steps=3)
    with pytest.raises(ConfigurationError, match="custom loop"):
        cbs.on_train_begin()
    mon2 = EnergyMonitor([FakeMeter(joules_per_read=1.0)], print_summary=False,
                         samples_per_epoch=10, advice=False)
    cbs = keras.callbacks.CallbackList([mon2], model=model, epochs=1, steps=3)
    cbs.on_train_begin()
    cbs.on_epoch_begin(0)
    it = model.optimizer.iterations
    it.assign(it + 3)  # the custom loop's three optimizer steps
    logs: dict[str, float] = {}
    mon2.on_epoch_end(0, logs)
    cbs.on_train_end()
    assert logs["energy_joules"] == 1.0
    assert logs["energy_joules_per_sample"] == pytest.approx(0.1)
