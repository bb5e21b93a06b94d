"""EnergyMonitor end to end with tiny real ``model.fit`` runs: keys, values, validation, logs."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from wattwise_keras_helpers import BATCH, N_TRAIN, N_VAL, arrays, tiny_model

from wattwise.errors import ConfigurationError, MeterUnavailableError
from wattwise.testing import FakeMeter

keras = pytest.importorskip("keras")
from wattwise.keras import EnergyMonitor

pytestmark = pytest.mark.keras

J = 2.0  # FakeMeter joules_per_read: every window (one read at start, one at end) moves J


def _fit(monitor: Any, epochs: int = 2, callbacks: list[Any] | None = None, **kw: Any) -> Any:
    x, y = arrays(N_TRAIN)
    vx, vy = arrays(N_VAL, seed=1)
    kw.setdefault("validation_data", (vx, vy))
    return tiny_model().fit(x, y, batch_size=BATCH, epochs=epochs, verbose=0,
                            callbacks=[monitor, *(callbacks or [])], **kw)


def _monitor(**kw: Any) -> EnergyMonitor:
    kw.setdefault("print_summary", False)
    return EnergyMonitor([FakeMeter(("gpu:0",), joules_per_read=J)], **kw)


def test_history_keys_and_values() -> None:
    hist = _fit(_monitor()).history
    assert hist["energy_joules"] == [J, J]
    assert hist["energy_joules_per_sample"] == pytest.approx([J / N_TRAIN] * 2)
    assert hist["energy_joules_gpu_0"] == [J, J]
    assert all(w > 0 for w in hist["energy_watts"])
    assert hist["val_energy_joules"] == [J, J]
    assert hist["val_energy_joules_per_sample"] == pytest.approx([J / N_VAL] * 2)
    assert all(w > 0 for w in hist["val_energy_watts"])
    assert hist["energy_estimated"] == [0.0, 0.0]  # measured
    assert not any("estimated" in k for k in hist if k != "energy_estimated")
    assert len(hist["loss"]) == 2


def test_summary_counts_real_samples(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    mon = _monitor(summary_path=path)
    _fit(mon)
    summary = json.loads(path.read_text())
    assert summary["status"] == "completed"
    assert summary["metadata"]["framework"] == "keras"
    epochs = summary["epochs"]
    assert len(epochs) == 2
    for ep in epochs:
        phases = ep["phases"]
        assert phases["train"]["samples"] == N_TRAIN
        assert phases["train"]["batches"] == 3  # 4 + 4 + 2
        assert phases["validate"]["samples"] == N_VAL
        assert phases["validate"]["batches"] == 2  # 4 + 1


def test_no_validation_has_no_val_keys() -> None:
    hist = _fit(_monitor(), epochs=1, validation_data=None).history
    assert hist["energy_joules"] == [J]
    assert not any(k.startswith("val_") for k in hist)


def test_validation_is_excluded_from_training() -> None:
    """The meter moves 1 J per training batch and 100 J per validation batch, when Keras
    actually fetches them; the train window must see only the former."""
    meter = FakeMeter(("cpu:package-0",))

    class Batches(keras.utils.PyDataset):
        def __init__(self, n: int, joules: float) -> None:
            super().__init__()
            self.x, self.y = arrays(n)
            self.joules = joules
            self.peek = True

        def __len__(self) -> int:
            return (len(self.x) + BATCH - 1) // BATCH

        def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
            if not self.peek:
                meter.advance(self.joules)
            s = slice(i * BATCH, (i + 1) * BATCH)
            return self.x[s], self.y[s]

    train, val = Batches(N_TRAIN, 1.0), Batches(N_VAL, 100.0)

    class Arm(keras.callbacks.Callback):  # listed first: arms after Keras's own peeking
        def on_train_begin(self, logs: Any = None) -> None:
            pass

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            train.peek = False

        def on_test_begin(self, logs: Any = None) -> None:
            val.peek = False

    mon = EnergyMonitor([meter], print_summary=False)
    hist = tiny_model().fit(train, validation_data=val, epochs=2, verbose=0,
                            callbacks=[Arm(), mon]).history
    assert hist["energy_joules"] == [3.0, 3.0]
    assert hist["val_energy_joules"] == [200.0, 200.0]
    assert hist["energy_joules_per_sample"] == pytest.approx([3.0 / N_TRAIN] * 2)
    assert hist["val_energy_joules_per_sample"] == pytest.approx([200.0 / N_VAL] * 2)


def test_estimates_have_the_measured_keys_and_say_so() -> None:
    """An estimate-only machine logs the keys of a machine with counters; energy_estimated=1.0."""
    mon = EnergyMonitor([FakeMeter(("cpu:estimated",), joules_per_read=J, estimated=True,
                                   name="codecarbon")], print_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = _fit(mon, epochs=1).history
    measured = _fit(EnergyMonitor([FakeMeter(("cpu:estimated",), joules_per_read=J)],
                                  print_summary=False), epochs=1).history
    assert hist.keys() == measured.keys()
    assert hist["energy_joules"] == [J]
    assert hist["val_energy_joules_per_sample"] == pytest.approx([J / N_VAL])
    assert hist["energy_estimated"] == [1.0] and measured["energy_estimated"] == [0.0]
    assert not any("estimated" in k for k in hist if k not in (
        "energy_estimated", "energy_joules_cpu_estimated", "val_energy_joules_cpu_estimated"))


def test_csv_logger_after_monitor(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    _fit(_monitor(), callbacks=[keras.callbacks.CSVLogger(str(path))])
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 2
    for row in rows:
        assert float(row["energy_joules"]) == J
        assert float(row["energy_joules_per_sample"]) == pytest.approx(J / N_TRAIN)
        assert float(row["val_energy_joules"]) == J


def _scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out = {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}
    import tensorflow as tf  # only reached on the TF backend test below

    for t in acc.Tags().get("tensors", []):
        if t.startswith("epoch_"):
            out[t] = [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(t)]
    return out


def _wattwise_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _texts(run_dir: Path) -> dict[str, list[str]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    acc = EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
    acc.Reload()
    return {t: [tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in acc.Tensors(t)]
            for t in acc.PluginTagToContent("text")}


def _tag_events(log_dir: Path) -> dict[tuple[str, str], list[int]]:
    """(run, tag) -> the steps of every event of that tag, over every event file of the run:
    a tag written twice (two files, or twice in one) shows each step twice."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    out: dict[tuple[str, str], list[int]] = {}
    for f in sorted(log_dir.rglob("events.out.tfevents.*")):
        run = f.parent.relative_to(log_dir).as_posix()
        for event in EventFileLoader(str(f)).Load():
            for value in event.summary.value:
                out.setdefault((run, value.tag), []).append(event.step)
    return out


def test_log_dir_event_files(tmp_path: Path) -> None:
    _fit(_monitor(log_dir=tmp_path))
    train = _wattwise_scalars(tmp_path / "train")
    val = _wattwise_scalars(tmp_path / "validation")
    assert train["epoch_energy_joules"] == [(0, J), (1, J)]
    assert [s for s, _ in train["epoch_energy_joules_per_sample"]] == [0, 1]
    assert train["epoch_energy_joules_per_sample"][0][1] == pytest.approx(J / N_TRAIN)
    assert val["epoch_energy_joules"] == [(0, J), (1, J)]
    assert val["epoch_energy_joules_per_sample"][1][1] == pytest.approx(J / N_VAL)
    assert not any(t.startswith("epoch_val_") for t in val)
    assert train["epoch_energy_estimated"] == [(0, 0.0), (1, 0.0)]
    assert "epoch_energy_estimated" not in val  # train/ only, as Keras's TensorBoard puts it
    assert _texts(tmp_path / "train") == {
        "wattwise/measurement": ["MEASURED by hardware counters (fake)"]}
    files = list((tmp_path / "train").glob("events.out.tfevents.*.wattwise"))
    assert len(files) == 1
    # summary_path="auto" with a log_dir: the run summary lands beside the event files
    summary = json.loads((tmp_path / "wattwise_summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2


def test_keras_tensorboard_callback_records_keys(tmp_path: Path) -> None:
    pytest.importorskip("tensorflow")  # keras.callbacks.TensorBoard writes with tf.summary
    tb = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    _fit(_monitor(), callbacks=[tb])
    train = _scalars(tmp_path / "train")
    val = _scalars(tmp_path / "validation")
    assert [v for _, v in train["epoch_energy_joules"]] == [J, J]
    assert [v for _, v in val["epoch_energy_joules"]] == [J, J]
    assert val["epoch_energy_joules_per_sample"][0][1] == pytest.approx(J / N_VAL)


@pytest.mark.parametrize("tensorboard_first", [False, True], ids=["monitor-first", "tb-first"])
def test_keras_tensorboard_in_the_same_folder_writes_each_tag_once(
    tmp_path: Path, tensorboard_first: bool
) -> None:
    """keras.callbacks.TensorBoard(log_dir=d) with EnergyMonitor(log_dir=d): every energy tag
    once per epoch in train/ and validation/, tags like Keras's own (epoch_energy_joules)."""
    pytest.importorskip("tensorflow")
    tb = keras.callbacks.TensorBoard(log_dir=str(tmp_path))
    mon = _monitor(log_dir=tmp_path)
    x, y = arrays(N_TRAIN)
    tiny_model().fit(x, y, batch_size=BATCH, epochs=2, verbose=0,
                     validation_data=arrays(N_VAL, seed=1),
                     callbacks=[tb, mon] if tensorboard_first else [mon, tb])
    events = _tag_events(tmp_path)
    energy = {k: v for k, v in events.items() if "energy" in k[1]}
    for run, tag in [("train", "epoch_energy_joules"), ("train", "epoch_energy_estimated"),
                     ("train", "epoch_energy_joules_per_sample"),
                     ("validation", "epoch_energy_joules"),
                     ("validation", "epoch_energy_joules_per_sample")]:
        assert energy.pop((run, tag)) == [0, 1], (run, tag, events.get((run, tag)))
    assert all(steps == [0, 1] for steps in energy.values()), energy  # the others once too
    assert not any(tag.startswith("epoch_val_") for _, tag in energy)
    texts = [k for k in events if k[1] == "wattwise/measurement"]
    assert texts == [("train", "wattwise/measurement")] and events[texts[0]] == [0]


def test_failing_meter_never_stops_training(tmp_path: Path) -> None:
    meter = FakeMeter(joules_per_read=J)
    meter.fail_on_read(after=3)  # start, epoch-0 train start, end; then every read fails
    path = tmp_path / "run.json"
    mon = EnergyMonitor([meter], print_summary=False, summary_path=path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = _fit(mon, epochs=3).history
    assert len(hist["loss"]) == 3  # training went on
    assert any("EnergyMonitor" in str(w.message) or "meter" in str(w.message).lower()
               for w in caught)
    assert hist["energy_joules"][0] == J  # what was measured is kept
    summary = json.loads(path.read_text())
    assert summary["status"] == "completed"
    assert summary["epochs"][0]["phases"]["train"]["joules"] == J


def test_meter_raising_anything_never_stops_training() -> None:
    meter = FakeMeter(joules_per_read=J)
    meter.fail_on_read(after=2, exc=RuntimeError("driver gone"))
    mon = EnergyMonitor([meter], print_summary=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = _fit(mon, epochs=2).history
    assert len(hist["loss"]) == 2


def test_standalone_evaluate_is_the_test_phase(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    mon = _monitor(summary_path=path)
    model = tiny_model()
    x, y = arrays(N_VAL)
    model.evaluate(x, y, batch_size=BATCH, verbose=0, callbacks=[mon])
    summary = json.loads(path.read_text())
    test = summary["epochs"][0]["phases"]["test"]
    assert test["samples"] == N_VAL and test["joules"] == J
    assert "train" not in summary["epochs"][0]["phases"]


def test_standalone_predict_and_evaluate_runs(tmp_path: Path) -> None:
    """predict() then evaluate() with one monitor: two stages of one run, each its own epoch."""
    meter = FakeMeter(joules_per_read=J)  # the user's meter: stays open between the calls
    mon = EnergyMonitor([meter], print_summary=False, summary_path=tmp_path / "run.json",
                        log_dir=tmp_path / "tb")
    model = tiny_model()
    x, y = arrays(N_TRAIN)
    model.predict(x, batch_size=BATCH, verbose=0, callbacks=[mon])
    pred = json.loads((tmp_path / "run.json").read_text())["epochs"][0]["phases"]["predict"]
    assert pred["samples"] == N_TRAIN and pred["batches"] == 3 and pred["joules"] == J
    model.evaluate(x, y, batch_size=BATCH, verbose=0, callbacks=[mon])
    summary = json.loads((tmp_path / "run.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["predict", "test"]
    test = summary["epochs"][1]["phases"]["test"]
    assert summary["epochs"][1]["stage"] == "test"
    assert test["samples"] == N_TRAIN and test["joules"] == J
    scalars = _wattwise_scalars(tmp_path / "tb" / "test")
    assert scalars["epoch_test_energy_joules"] == [(0, J)]
    assert _wattwise_scalars(tmp_path / "tb" / "predict")["epoch_predict_energy_joules"] == [(0, J)]


def test_interrupted_fit_with_context_manager(tmp_path: Path) -> None:
    path = tmp_path / "run.json"

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch == 1:
                raise KeyboardInterrupt

    mon = _monitor(summary_path=path)
    with pytest.raises(KeyboardInterrupt), mon:
        _fit(mon, epochs=4, callbacks=[Stop()])
    summary = json.loads(path.read_text())
    assert summary["status"] == "interrupted"
    assert len(summary["epochs"]) == 2
    assert mon.summary is not None and mon.summary["status"] == "interrupted"


def test_summary_on_disk_during_the_run(tmp_path: Path) -> None:
    """The summary exists (status running) from train start; the tracker rewrites it after
    every epoch (background writer), and finish writes the final one."""
    path = tmp_path / "run.json"
    seen: list[str] = []

    class Peek(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            seen.append(json.loads(path.read_text())["status"])

    _fit(_monitor(summary_path=path), epochs=2, callbacks=[Peek()])
    assert seen == ["running", "running"]
    final = json.loads(path.read_text())
    assert final["status"] == "completed" and len(final["epochs"]) == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"log_every_n_steps": 0}, "log_every_n_steps=0"),
        ({"batch_size": -1}, "batch_size=-1"),
        ({"samples_per_epoch": 2.5}, "samples_per_epoch=2.5"),
        ({"validation_samples": True}, "validation_samples=True"),
        ({"advice": "yes"}, "advice='yes'"),
        ({"log_dir": 3}, "log_dir=3"),
        ({"min_window_s": -1.0}, "min_window_s"),
    ],
)
def test_bad_arguments_raise_at_construction(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        EnergyMonitor([FakeMeter()], **kwargs)


def test_constructor_has_no_side_effects(tmp_path: Path) -> None:
    meter = FakeMeter()
    EnergyMonitor([meter], log_dir=tmp_path / "tb", summary_path=tmp_path / "s.json")
    assert meter.reads == 0
    assert not (tmp_path / "tb").exists() and not (tmp_path / "s.json").exists()


def test_refit_after_interruption_finishes_the_old_run(tmp_path: Path) -> None:
    """No context manager, the error caught: the next fit with the same monitor closes the
    interrupted run and starts a new one in its own file (``a.run2.json``)."""
    first = tmp_path / "a.json"

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            raise KeyboardInterrupt

    mon = _monitor(summary_path=first)
    with pytest.raises(KeyboardInterrupt):
        _fit(mon, epochs=3, callbacks=[Stop()])
    assert json.loads(first.read_text())["status"] == "running"
    hist = _fit(mon, epochs=1).history
    assert json.loads(first.read_text())["status"] == "interrupted"
    second = json.loads((tmp_path / "a.run2.json").read_text())
    assert second["status"] == "completed" and second["resumed_from"] is None
    assert hist["energy_joules"] == [J]


def test_meter_asked_for_by_name_that_cannot_open_raises_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATTWISE_RAPL_ROOT", str(tmp_path / "no-powercap"))  # no RAPL here

    class Count(keras.callbacks.Callback):
        batches = 0

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            Count.batches += 1

    mon = EnergyMonitor(["rapl"], print_summary=False)
    with pytest.raises(MeterUnavailableError, match="Fix"):
        _fit(mon, epochs=1, callbacks=[Count()])
    assert Count.batches == 0


def test_second_worker_on_a_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Multi-worker: worker 1 (local rank 1) writes its own summary file, no event files, and
    does not open node-wide meters (RAPL, codecarbon)."""
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    gpu = FakeMeter(("gpu:0",), scope="device", joules_per_read=J)  # this worker's own device
    mon = EnergyMonitor([gpu], print_summary=False, summary_path=tmp_path / "run.json",
                        log_dir=tmp_path / "tb")
    hist = _fit(mon, epochs=1).history
    assert hist["energy_joules"] == [J]  # its own (device) meters still measure
    assert not (tmp_path / "run.json").exists()
    summary = json.loads((tmp_path / "run.rank1.json").read_text())
    assert summary["config"]["node_meters"] is False
    assert summary["metadata"]["global_rank"] == 1
    assert not (tmp_path / "tb").exists()


@pytest.mark.parametrize("estimated", [False, True], ids=["measured", "estimated"])
def test_early_stopping_on_energy_stops_with_counters_and_with_estimates(estimated: bool) -> None:
    """EarlyStopping(monitor="energy_joules_per_sample", mode="min") stops on a machine with
    counters and on one with estimates only: the key is the same."""
    meter = FakeMeter(joules_per_read=J, estimated=estimated,
                      name="codecarbon" if estimated else "fake")
    stop = keras.callbacks.EarlyStopping(monitor="energy_joules_per_sample", mode="min",
                                         patience=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hist = _fit(EnergyMonitor([meter], print_summary=False, advice=False), epochs=5,
                    callbacks=[stop]).history
    assert stop.stopped_epoch == 1  # J per window never decreases: no improvement after epoch 0
    assert len(hist["energy_joules_per_sample"]) == 2
    assert hist["energy_estimated"] == [float(estimated)] * 2


def test_validation_freq_and_early_stopping_on_energy(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    stop = keras.callbacks.EarlyStopping(monitor="energy_joules_per_sample", patience=0,
                                         mode="min")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # "metric not available" would be one
        hist = _fit(_monitor(summary_path=path, advice=False), epochs=3, callbacks=[stop],
                    validation_freq=2).history
    # the per-sample energy never decreases (J per window), so EarlyStopping stops after epoch 1
    assert len(hist["energy_joules"]) == 2
    assert hist["val_energy_joules"] == [J]  # validation ran in epoch 1 only
    phases = [sorted(ep["phases"]) for ep in json.loads(path.read_text())["epochs"]]
    assert phases == [["train"], ["train", "validate"]]
