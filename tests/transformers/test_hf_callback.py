"""wattwise.transformers.EnergyMonitor with a real tiny BERT (built from a config, no download)
trained by a real transformers.Trainer on CPU; TensorBoard event files are read back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers.trainer_callback")  # (not tests/transformers, a namespace)
pytest.importorskip("accelerate")

from transformers import TrainerCallback  # noqa: E402
from wattwise_hf_helpers import make_trainer, read_scalars  # noqa: E402

from wattwise.errors import ConfigurationError, EstimateWarning, MeterWarning  # noqa: E402
from wattwise.testing import FakeMeter  # noqa: E402
from wattwise.transformers import EnergyMonitor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::wattwise.errors.SizingWarning")


@pytest.fixture(autouse=True)
def _tensorboard_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # an evaluate() before any train() would write ./runs/<date> in the working directory
    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))


def energy_entries(history: list[dict[str, Any]], prefix: str = "") -> list[dict[str, Any]]:
    return [e for e in history if f"{prefix}energy_joules" in e]


def test_train_with_epoch_eval_logs_keys_everywhere(tmp_path: Path) -> None:
    meter = FakeMeter(("cpu:package-0",), joules_per_read=1.0)
    monitor = EnergyMonitor(meters=[meter], print_summary=False)
    trainer = make_trainer(tmp_path, [monitor], eval_strategy="epoch")
    trainer.train()

    summary = monitor.summary
    assert summary is not None and summary["status"] == "completed"
    epochs = [e for e in summary["epochs"] if e["stage"] == "fit"]
    assert [e["epoch"] for e in epochs] == [0, 1]
    for e in epochs:  # every training sample and evaluation sample counted once per epoch
        assert (e["phases"]["train"]["samples"], e["phases"]["train"]["batches"]) == (64, 8)
        assert (e["phases"]["validate"]["samples"], e["phases"]["validate"]["batches"]) == (20, 3)

    history = trainer.state.log_history
    train, ev = energy_entries(history), energy_entries(history, "eval_")
    assert [e["step"] for e in train] == [8, 16] and [e["step"] for e in ev] == [8, 16]
    for logged, e in zip(train, epochs):
        phase = e["phases"]["train"]
        assert logged["energy_joules"] == phase["joules"] > 0
        assert logged["energy_joules_per_sample"] == pytest.approx(phase["joules"] / 64)
        assert logged["energy_joules_cpu_package-0"] == phase["joules"]
        assert logged["energy_estimated"] == 0.0
    for logged, e in zip(ev, epochs):
        assert logged["eval_energy_joules_per_sample"] == pytest.approx(
            e["phases"]["validate"]["joules"] / 20)
    # the Trainer's own epoch-end log still happens (logging_strategy="epoch")
    assert [e["step"] for e in history if "loss" in e] == [8, 16]

    scalars = read_scalars(tmp_path / "tb")
    assert [v for _, v in scalars["train/energy_joules"]] == [e["energy_joules"] for e in train]
    assert [s for s, _ in scalars["eval/energy_joules_per_sample"]] == [8, 16]
    assert scalars["train/energy_estimated"] == [(8, 0.0), (16, 0.0)]
    assert summary["advice"] is not None  # the sizing check ran on the BERT at train start
    fc = summary["forecast"]  # 2 epochs x 64 samples planned, projected after each epoch
    assert (fc["planned_epochs"], fc["samples_per_epoch"]) == (2, 64)
    assert [e["energy_projected_run_joules"] for e in train] == pytest.approx(
        [p["run_joules"] for p in fc["projections"]])
    assert fc["model"] is not None and fc["final"]["measured_run_joules"] is not None
    assert (Path(trainer.args.output_dir) / "wattwise_summary.json").is_file()


def test_step_eval_and_gradient_accumulation_count_every_sample(tmp_path: Path) -> None:
    monitor = EnergyMonitor(meters=[FakeMeter(joules_per_read=1.0)], print_summary=False,
                            advice=False)
    # 60 samples, batches of 8: 7 full + 4; accumulation 3: optimizer steps of 3, 3, 2 batches
    trainer = make_trainer(tmp_path, [monitor], n_train=60, num_train_epochs=1,
                           gradient_accumulation_steps=3, eval_strategy="steps", eval_steps=2)
    trainer.train()
    (epoch,) = monitor.summary["epochs"]  # type: ignore[index]
    assert (epoch["phases"]["train"]["samples"], epoch["phases"]["train"]["batches"]) == (60, 8)
    # evaluations after step 2 and at the end (step 3), each 20 samples
    assert epoch["phases"]["validate"]["samples"] == 40
    history = trainer.state.log_history
    assert [e["step"] for e in energy_entries(history, "eval_")] == [2, 3]
    assert [e["energy_joules_per_sample"] for e in energy_entries(history)] == [
        pytest.approx(epoch["phases"]["train"]["joules"] / 60)]
    # logged in on_epoch_end, before the Trainer's own epoch-end log, which still happens
    assert [e["step"] for e in history if "loss" in e] == [3]


def test_standalone_evaluate_with_an_estimate(tmp_path: Path) -> None:
    monitor = EnergyMonitor(meters=[FakeMeter(joules_per_read=2.0, estimated=True)],
                            print_summary=False)
    trainer = make_trainer(tmp_path, [monitor])
    with pytest.warns(EstimateWarning):  # the estimate says so
        metrics = trainer.evaluate()
    # the first batch runs before any hook: batches 2 and 3 (8 + 4 samples) are measured
    (stage,) = monitor.summary["stages"]  # type: ignore[index]
    phase = monitor.summary["epochs"][0]["phases"]["validate"]  # type: ignore[index]
    assert (phase["samples"], phase["batches"]) == (12, 2)
    assert metrics["eval_energy_estimated"] == 1.0
    assert metrics["eval_energy_joules"] == phase["joules"] > 0
    (logged,) = energy_entries(trainer.state.log_history, "eval_")
    assert logged["eval_energy_joules_per_sample"] == pytest.approx(phase["joules"] / 12)
    assert stage["status"] == "completed"


class Boom(TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 2:
            raise RuntimeError("boom")


def test_train_that_raises_is_failed(tmp_path: Path) -> None:
    monitor = EnergyMonitor(meters=[FakeMeter()], print_summary=False, advice=False)
    trainer = make_trainer(tmp_path, [monitor, Boom()], max_steps=4)
    with pytest.raises(RuntimeError, match="boom"), monitor:
        trainer.train()
    summary = monitor.summary
    assert summary is not None and summary["status"] == "failed"
    assert "boom" in str(summary["stages"][0].get("error"))


def test_a_failing_meter_never_stops_training(tmp_path: Path) -> None:
    meter = FakeMeter(joules_per_read=1.0)
    meter.fail_on_read(after=3)
    monitor = EnergyMonitor(meters=[meter], print_summary=False, advice=False)
    trainer = make_trainer(tmp_path, [monitor], num_train_epochs=2)
    with pytest.warns(MeterWarning):
        out = trainer.train()
    assert out.global_step == 16
    assert monitor.summary["status"] == "completed"  # type: ignore[index]


@pytest.mark.parametrize(("kw", "name"), [
    (dict(advice="yes"), "advice"), (dict(print_summary=1), "print_summary"),
    (dict(idle_baseline_s=-1.0), "idle_baseline_s"), (dict(meters=["nope"]), "meters"),
    (dict(carbon_intensity_g_per_kwh=-5), "carbon_intensity_g_per_kwh"),
])
def test_bad_arguments_raise_at_construction(kw: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        EnergyMonitor(**kw)


def test_predict_puts_keys_in_its_metrics_only(tmp_path: Path) -> None:
    monitor = EnergyMonitor(meters=[FakeMeter(joules_per_read=1.0)], print_summary=False)
    trainer = make_trainer(tmp_path, [monitor])
    out = trainer.predict(trainer.eval_dataset, metric_key_prefix="pred")
    assert out.metrics["pred_energy_joules"] > 0 and out.metrics["pred_energy_estimated"] == 0.0
    assert not energy_entries(trainer.state.log_history, "pred_")  # predict() logs nothing
    assert monitor.summary["status"] == "completed"  # type: ignore[index]


def test_ddp_node_counters_counted_once(tmp_path: Path) -> None:
    """2 CPU processes (gloo, torch.distributed.run) share one fake RAPL tree: the logged joules
    are the tree's movement (read by local rank 0 only), the samples those of both ranks."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from wattwise.testing import fake_rapl_zone

    zone = fake_rapl_zone(tmp_path / "powercap" / "intel-rapl:0", "package-0", 5_000_000)
    here = Path(__file__).parent
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(here), *filter(None, [os.environ.get("PYTHONPATH")])]), OMP_NUM_THREADS="1")
    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_addr", "127.0.0.1", "--master_port", str(port),
         str(here / "_hf_ddp_script.py"), str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env,
        start_new_session=True)  # its own process group: a hang kills the workers too
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
    assert proc.returncode == 0, out[-3000:] + err[-5000:]
    ranks = [json.loads((tmp_path / f"history.rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["world_size"] == 2
    moved_j = (ranks[0]["counter_uj"] - 5_000_000) / 1e6
    assert moved_j == pytest.approx(4.0)  # 4 optimizer steps, 1 J each, counted once
    for r in ranks:  # the same keys and values on every rank
        (train,) = [e for e in r["history"] if "energy_joules" in e]
        assert train["energy_joules"] == pytest.approx(4.0)
        assert train["energy_joules_per_sample"] == pytest.approx(4.0 / 32)  # both ranks' samples
        assert train["energy_joules_cpu_package-0"] == pytest.approx(4.0)
        # the evaluation was published too (its joules are unknown: the counter did not move
        # in a window shorter than the meter's update period - left out, not 0)
        (ev,) = [e for e in r["history"] if "eval_energy_estimated" in e]
        assert ev["eval_energy_estimated"] == 0.0 and ev.get("eval_energy_joules", 0.0) == 0.0
    assert (tmp_path / "run.json").is_file() and (tmp_path / "run.rank1.json").is_file()
    assert zone.is_dir()


def test_eval_on_start_is_measured_whole_and_kept_in_epoch_0(tmp_path: Path) -> None:
    monitor = EnergyMonitor(meters=[FakeMeter(joules_per_read=1.0)], print_summary=False,
                            advice=False)
    trainer = make_trainer(tmp_path, [monitor], num_train_epochs=1, eval_on_start=True)
    trainer.train()
    (epoch,) = monitor.summary["epochs"]  # type: ignore[index]
    assert epoch["epoch"] == 0 and epoch["phases"]["train"]["samples"] == 64
    assert (epoch["phases"]["validate"]["samples"], epoch["phases"]["validate"]["batches"]) == (20, 3)
    assert [e["step"] for e in energy_entries(trainer.state.log_history, "eval_")] == [0]


def test_train_raising_in_a_script_leaves_a_failed_summary(tmp_path: Path) -> None:
    """No context manager: the exception that ends the script marks the run "failed"."""
    import json
    import os
    import subprocess
    import sys

    here = Path(__file__).parent
    code = (
        "import sys; from pathlib import Path\n"
        "from test_hf_callback import Boom, make_trainer\n"
        "from wattwise.testing import FakeMeter\n"
        "from wattwise.transformers import EnergyMonitor\n"
        "monitor = EnergyMonitor(meters=[FakeMeter()], print_summary=False, advice=False)\n"
        "make_trainer(Path(sys.argv[1]), [monitor, Boom()], max_steps=4).train()\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(here), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, timeout=240, env=env)
    assert proc.returncode != 0 and "boom" in proc.stderr
    summary = json.loads((tmp_path / "out" / "wattwise_summary.json").read_text())
    assert summary["status"] == "failed"
