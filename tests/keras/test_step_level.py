"""Per-batch hooks exist only with step-level logging (so Keras keeps async dispatch)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from wattwise_keras_helpers import BATCH, N_TRAIN, arrays, tiny_model

from wattwise.errors import SizingWarning
from wattwise.testing import FakeMeter

keras = pytest.importorskip("keras")
from keras.src.utils.python_utils import is_default

from wattwise.keras import EnergyMonitor

pytestmark = pytest.mark.keras

BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end",
               "on_test_batch_begin", "on_test_batch_end", "on_predict_batch_begin",
               "on_predict_batch_end")


def test_default_monitor_overrides_no_batch_hook() -> None:
    mon = EnergyMonitor([FakeMeter()])
    assert type(mon) is EnergyMonitor
    assert all(is_default(getattr(mon, h)) for h in BATCH_HOOKS)
    cbs = keras.callbacks.CallbackList([mon], model=tiny_model())
    if keras.src.backend.IS_THREAD_SAFE:  # TF runs batch callbacks synchronously anyway
        assert cbs._async_train and cbs._async_test and cbs._async_predict


def test_step_level_monitor_overrides_train_batch_end_only() -> None:
    mon = EnergyMonitor([FakeMeter()], log_every_n_steps=2)
    assert isinstance(mon, EnergyMonitor) and type(mon) is not EnergyMonitor
    assert not is_default(mon.on_train_batch_end)
    assert all(is_default(getattr(mon, h)) for h in BATCH_HOOKS if h != "on_train_batch_end")
    cbs = keras.callbacks.CallbackList([mon], model=tiny_model())
    assert not cbs._async_train


def test_step_level_readings(tmp_path: Path) -> None:
    meter = FakeMeter(("gpu:0",), joules_per_read=1.0)
    seen: list[dict[str, float]] = []

    class Peek(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            seen.append({k: v for k, v in (logs or {}).items() if k.startswith("energy_")})

    mon = EnergyMonitor([meter], log_every_n_steps=1, min_window_s=0.0, print_summary=False,
                        log_dir=tmp_path, summary_path=tmp_path / "run.json")
    x, y = arrays(N_TRAIN)
    hist = tiny_model().fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
                            callbacks=[mon, Peek()]).history
    assert len(seen) == 6
    # every batch is a step window: one read -> 1 J, over that batch's samples (4, 4, 2)
    assert [s["energy_step_joules"] for s in seen] == [1.0] * 6
    assert [s["energy_step_joules_per_sample"] for s in seen] == pytest.approx(
        [0.25, 0.25, 0.5] * 2)
    # the epoch window still counts each sample once
    summary = json.loads((tmp_path / "run.json").read_text())
    assert [ep["phases"]["train"]["samples"] for ep in summary["epochs"]] == [N_TRAIN] * 2
    assert hist["energy_joules_per_sample"] == pytest.approx(
        [h / N_TRAIN for h in hist["energy_joules"]])

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "train"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("batch_energy_step_joules")]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_step_level_with_keras_tensorboard_batch_logging_writes_each_tag_once(
    tmp_path: Path
) -> None:
    """keras.callbacks.TensorBoard(update_freq=1) after the monitor in the same folder writes the
    step-level keys from the batch logs; the monitor writes no batch scalar of its own."""
    pytest.importorskip("tensorflow")  # keras.callbacks.TensorBoard writes with tf.summary
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    mon = EnergyMonitor([FakeMeter(("gpu:0",), joules_per_read=1.0)], log_every_n_steps=1,
                        min_window_s=0.0, print_summary=False, advice=False, log_dir=tmp_path)
    tb = keras.callbacks.TensorBoard(log_dir=str(tmp_path), update_freq=1)
    x, y = arrays(N_TRAIN)
    tiny_model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[mon, tb])
    steps: dict[str, list[int]] = {}
    for f in (tmp_path / "train").glob("events.out.tfevents.*"):
        for event in EventFileLoader(str(f)).Load():
            for value in event.summary.value:
                steps.setdefault(value.tag, []).append(event.step)
    assert sorted(steps["batch_energy_step_joules"]) == [1, 2, 3]  # 3 batches, each once
    assert steps["epoch_energy_joules"] == [0]


def test_step_level_respects_min_window() -> None:
    meter = FakeMeter(joules_per_read=1.0)
    mon = EnergyMonitor([meter], log_every_n_steps=1, min_window_s=3600.0, print_summary=False)
    x, y = arrays(N_TRAIN)
    tiny_model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[mon])
    assert meter.reads == 4  # start, train window start/end, finish: no step reads


def test_sizing_warning_once(tmp_path: Path) -> None:
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(512, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    mon = EnergyMonitor([FakeMeter()], print_summary=False, summary_path=tmp_path / "r.json")
    x, y = arrays(N_TRAIN)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(x, y, batch_size=BATCH, epochs=2, verbose=0, callbacks=[mon])
    sizing = [w for w in caught if issubclass(w.category, SizingWarning)]
    advice = json.loads((tmp_path / "r.json").read_text())["advice"]
    assert advice is not None and advice["batch_size"] == BATCH
    assert advice["n_samples"] == N_TRAIN
    assert len(sizing) == (1 if advice["far"] else 0)


def test_advice_off() -> None:
    mon = EnergyMonitor([FakeMeter()], print_summary=False, advice=False)
    x, y = arrays(N_TRAIN)
    tiny_model().fit(x, y, batch_size=BATCH, epochs=1, verbose=0, callbacks=[mon])
    assert mon.summary is not None and not mon.summary.get("advice")
