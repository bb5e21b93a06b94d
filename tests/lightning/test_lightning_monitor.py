"""End-to-end tests of wattwise's Lightning EnergyMonitor: tiny real Trainer.fit runs on CPU."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from _wattwise_lit import Api, loader, make_module, read_tensorboard, read_text

from wattwise.errors import ConfigurationError, MeterUnavailableError, WattwiseWarning
from wattwise.testing import FakeMeter

torch = pytest.importorskip("torch")

DOMAIN = "cpu:package-0"
DOMAIN_KEY = "cpu_package-0"  # the domain as a metric-key segment every logger accepts


def advancer(api: Api, meter: FakeMeter, train_j: Any = 2.0, val_j: float = 0.5) -> Any:
    """A callback that moves ``meter`` by a known amount per batch (also during the sanity check).

    ``train_j`` is joules per training batch, or a function epoch -> joules per batch.
    """

    class Advance(api.Callback):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.train_batches = 0
            self.sanity_val_batches = 0

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            j = train_j(trainer.current_epoch) if callable(train_j) else train_j
            meter.advance(j)
            self.train_batches += 1

        def on_validation_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            if trainer.sanity_checking:
                self.sanity_val_batches += 1
                meter.advance(1000.0)  # must not show up anywhere
            else:
                meter.advance(val_j)

    return Advance()


def monitor(api: Api, meter: FakeMeter, **kwargs: Any) -> Any:
    kwargs.setdefault("print_summary", False)
    kwargs.setdefault("advice", False)
    return api.EnergyMonitor(meters=[meter], **kwargs)


# --------------------------------------------------------------------------------------------
def test_fit_logs_measured_energy_to_callback_metrics_and_tensorboard(api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,))
    adv = advancer(api, meter, train_j=2.0, val_j=0.5)
    trainer = api.trainer(tmp_path, callbacks=[adv, monitor(api, meter)], num_sanity_val_steps=1)
    # 10 training samples in batches of 4 -> 4, 4, 2; 6 validation samples -> 4, 2
    trainer.fit(make_module(api), loader(10), loader(6))
    assert adv.sanity_val_batches == 1

    m = {k: float(v) for k, v in trainer.callback_metrics.items()}
    assert m["energy/train_joules"] == pytest.approx(6.0)  # 3 batches x 2 J
    assert m["energy/train_joules_per_sample"] == pytest.approx(0.6)  # 6 J / 10 samples
    assert m[f"energy/train_joules/{DOMAIN_KEY}"] == pytest.approx(6.0)
    assert m["energy/train_watts"] > 0
    assert m["energy/val_joules"] == pytest.approx(1.0)  # 2 batches x 0.5 J, sanity excluded
    assert m["energy/val_joules_per_sample"] == pytest.approx(1.0 / 6)
    assert m["energy/estimated"] == 0.0
    energy = {k for k in m if k.startswith("energy")}
    assert energy <= set(trainer.logged_metrics), energy - set(trainer.logged_metrics)
    assert not any(":" in k for k in trainer.logged_metrics)

    tb = read_tensorboard(tmp_path / "tb")
    train = tb["energy/train_joules_per_sample"]
    assert [v for _, v in train] == pytest.approx([0.6, 0.6])  # once per epoch, not per batch
    assert [s for s, _ in train] == [2, 5]  # the step of each epoch's last batch (global step - 1)
    assert [v for _, v in tb["energy/train_joules"]] == pytest.approx([6.0, 6.0])
    assert [v for _, v in tb["energy/val_joules_per_sample"]] == pytest.approx([1 / 6, 1 / 6])
    assert len(tb[f"energy/train_joules/{DOMAIN_KEY}"]) == 2
    assert [v for _, v in tb["energy/estimated"]] == [0.0] * 4  # with each train and val record
    assert read_text(tmp_path / "tb") == {
        "wattwise/measurement/text_summary": ["MEASURED by hardware counters (fake)"]}


def test_estimates_have_the_measured_keys_and_say_so(lit_api: Api, tmp_path: Path) -> None:
    """An estimate-only machine logs the same keys as a machine with counters; energy/estimated
    is 1.0, and the TensorBoard text entry says ESTIMATED once."""
    meter = FakeMeter((DOMAIN,), estimated=True, name="codecarbon")
    trainer = lit_api.trainer(
        tmp_path, callbacks=[advancer(lit_api, meter), monitor(lit_api, meter)], max_epochs=1
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(make_module(lit_api), loader(10), loader(6))
    measured = FakeMeter((DOMAIN,))
    trainer_m = lit_api.trainer(
        tmp_path / "m", callbacks=[advancer(lit_api, measured), monitor(lit_api, measured)],
        max_epochs=1)
    trainer_m.fit(make_module(lit_api), loader(10), loader(6))

    keys = {k for k in trainer.callback_metrics if k.startswith("energy")}
    assert keys == {k for k in trainer_m.callback_metrics if k.startswith("energy")}
    assert float(trainer.callback_metrics["energy/train_joules"]) == pytest.approx(6.0)
    assert float(trainer.callback_metrics["energy/estimated"]) == 1.0
    assert not any("estimated" in k for k in keys - {"energy/estimated"}), keys
    tb = read_tensorboard(tmp_path / "tb")
    assert "energy/val_joules" in tb and [v for _, v in tb["energy/estimated"]] == [1.0, 1.0]
    assert read_text(tmp_path / "tb") == {
        "wattwise/measurement/text_summary": ["ESTIMATED by codecarbon (no hardware counter readable)"]}


def test_last_partial_batch_and_batch_size_fn(lit_api: Api, tmp_path: Path) -> None:
    class Batch:
        def __init__(self, x: Any, y: Any) -> None:
            self.x, self.y = x, y

    def collate(items: list[Any]) -> Batch:
        return Batch(torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items]))

    meter = FakeMeter((DOMAIN,))
    mon = monitor(lit_api, meter)
    trainer = lit_api.trainer(tmp_path, callbacks=[advancer(lit_api, meter), mon], max_epochs=1)
    with pytest.warns(WattwiseWarning, match="cannot count the samples.*batch_size_fn"):
        trainer.fit(make_module(lit_api), loader(10, collate_fn=collate))  # never stops training
    assert "energy/train_joules_per_sample" not in trainer.callback_metrics  # unknown, never 0
    assert float(trainer.callback_metrics["energy/train_joules"]) == pytest.approx(6.0)
    assert mon.tracker.totals()["train"].samples is None

    meter = FakeMeter((DOMAIN,))
    mon = monitor(lit_api, meter, batch_size_fn=lambda b: int(b.x.shape[0]))
    trainer = lit_api.trainer(tmp_path / "ok", callbacks=[advancer(lit_api, meter, 3.0), mon], max_epochs=1)
    trainer.fit(make_module(lit_api), loader(10, collate_fn=collate))
    assert float(trainer.callback_metrics["energy/train_joules_per_sample"]) == pytest.approx(9.0 / 10)
    assert mon.tracker.totals()["train"].samples == 10


def test_batch_size_fn_returning_a_non_int_warns_once(lit_api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,))
    mon = monitor(lit_api, meter, batch_size_fn=lambda b: "four")
    trainer = lit_api.trainer(tmp_path, callbacks=[mon], max_epochs=2)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        trainer.fit(make_module(lit_api), loader(10))
    mine = [w for w in rec if issubclass(w.category, WattwiseWarning)]
    assert len(mine) == 1 and "batch_size_fn returned" in str(mine[0].message)
    assert trainer.current_epoch == 2  # training went on


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"log_every_n_steps": 0}, "log_every_n_steps=0"),
        ({"log_every_n_steps": 1.5}, "log_every_n_steps=1.5"),
        ({"batch_size_fn": 4}, "batch_size_fn=4"),
        ({"advice": "yes"}, "advice='yes'"),
        ({"print_summary": None}, "print_summary=None"),
    ],
)
def test_constructor_rejects_bad_arguments(lit_api: Api, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        lit_api.EnergyMonitor(meters=[FakeMeter()], **kwargs)


def test_failing_meter_does_not_stop_training(lit_api: Api, tmp_path: Path) -> None:
    good = FakeMeter(("gpu:0",), scope="device")
    bad = FakeMeter((DOMAIN,), name="flaky")
    bad.fail_on_read(after=3)
    mon = lit_api.EnergyMonitor(meters=[good, bad], print_summary=False, advice=False)
    trainer = lit_api.trainer(tmp_path, callbacks=[advancer(lit_api, good), mon], max_epochs=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(make_module(lit_api), loader(10), loader(6))
    assert trainer.current_epoch == 3  # all epochs ran
    assert trainer.state.finished
    # what the good meter measured is kept and logged
    assert float(trainer.callback_metrics["energy/train_joules/gpu_0"]) == pytest.approx(6.0)


def test_step_level_metrics_go_to_loggers(lit_api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,))
    mon = monitor(lit_api, meter, log_every_n_steps=1, min_window_s=0.0)
    trainer = lit_api.trainer(tmp_path, callbacks=[advancer(lit_api, meter, 2.0), mon], max_epochs=1)
    trainer.fit(make_module(lit_api), loader(10))
    tb = read_tensorboard(tmp_path / "tb")
    steps = tb["energy/train_step_joules"]
    assert len(steps) >= 1
    assert sum(v for _, v in steps) <= 6.0 + 1e-9
    assert all(v > 0 for _, v in tb["energy/train_step_watts"])


def test_no_step_level_metrics_by_default(lit_api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,))
    trainer = lit_api.trainer(tmp_path, callbacks=[advancer(lit_api, meter), monitor(lit_api, meter)], max_epochs=1)
    trainer.fit(make_module(lit_api), loader(10))
    tb = read_tensorboard(tmp_path / "tb")
    assert "energy/train_joules" in tb
    assert not any("step" in t for t in tb if t.startswith("energy"))


@pytest.mark.parametrize("estimated", [False, True], ids=["measured", "estimated"])
def test_early_stopping_monitors_joules_per_sample(
    lit_api: Api, tmp_path: Path, estimated: bool
) -> None:
    """The same EarlyStopping config works with counters and with estimates only."""
    meter = FakeMeter((DOMAIN,), estimated=estimated, name="codecarbon" if estimated else "fake")
    es = lit_api.callbacks.EarlyStopping(
        monitor="energy/train_joules_per_sample", mode="min", patience=1, check_on_train_epoch_end=True
    )
    # joules per batch grow every epoch -> J/sample gets worse after epoch 0
    adv = advancer(lit_api, meter, train_j=lambda epoch: 1.0 + epoch)
    trainer = lit_api.trainer(tmp_path, callbacks=[adv, monitor(lit_api, meter), es], max_epochs=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(make_module(lit_api), loader(10), loader(6))
    assert float(trainer.callback_metrics["energy/estimated"]) == float(estimated)
    assert es.stopped_epoch == 1
    assert trainer.current_epoch == 2
    assert float(es.best_score) == pytest.approx(0.3)  # 3 batches x 1 J / 10 samples


def test_checkpoint_resume_keeps_cumulative_totals(lit_api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,))
    ckpt = lit_api.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)
    mon1 = monitor(lit_api, meter)
    trainer = lit_api.trainer(
        tmp_path, callbacks=[advancer(lit_api, meter, 1.0), mon1, ckpt], max_epochs=2,
        enable_checkpointing=True,
    )
    trainer.fit(make_module(lit_api), loader(10))
    assert mon1.tracker.totals()["train"].joules == pytest.approx(6.0)
    last = tmp_path / "ckpt" / "last.ckpt"
    assert last.exists()
    assert "EnergyMonitor" in json.dumps(list(torch.load(last, weights_only=False)["callbacks"]))

    meter2 = FakeMeter((DOMAIN,))
    mon2 = monitor(lit_api, meter2)
    trainer2 = lit_api.trainer(
        tmp_path / "resumed", callbacks=[advancer(lit_api, meter2, 1.0), mon2], max_epochs=4
    )
    trainer2.fit(make_module(lit_api), loader(10), ckpt_path=str(last))
    totals = mon2.tracker.totals()["train"]
    assert totals.joules == pytest.approx(12.0)  # 2 epochs before + 2 after resuming, 3 J each
    assert totals.samples == 40
    assert totals.joules_per_sample == pytest.approx(0.3)


def test_exception_during_fit_writes_failed_summary(lit_api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,))
    path = tmp_path / "run.json"
    mon = monitor(lit_api, meter, summary_path=path)
    trainer = lit_api.trainer(tmp_path, callbacks=[advancer(lit_api, meter), mon], max_epochs=3)
    with pytest.raises(RuntimeError, match="boom from the test"):
        trainer.fit(make_module(lit_api, fail_at=(1, 1)), loader(10))
    summary = json.loads(path.read_text())
    assert summary["status"] == "failed"
    assert "boom from the test" in json.dumps(summary)
    assert mon.tracker.summary()["status"] == "failed"


def test_keyboard_interrupt_writes_interrupted_summary(lit_api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,))
    path = tmp_path / "run.json"
    mon = monitor(lit_api, meter, summary_path=path)
    trainer = lit_api.trainer(tmp_path, callbacks=[advancer(lit_api, meter), mon], max_epochs=3)
    handler = signal.getsignal(signal.SIGINT)
    try:
        # Lightning turns Ctrl-C into a graceful shutdown ending in sys.exit(1)
        with pytest.raises(SystemExit):
            trainer.fit(make_module(lit_api, fail_at=(1, 0), exc=KeyboardInterrupt), loader(10))
    finally:
        signal.signal(signal.SIGINT, handler)
    assert json.loads(path.read_text())["status"] == "interrupted"


def test_test_stage_logs_test_energy(lit_api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,))

    class AdvanceTest(lit_api.Callback):  # type: ignore[misc, name-defined]
        def on_test_batch_end(self, *args: Any) -> None:
            meter.advance(4.0)

    trainer = lit_api.trainer(tmp_path, callbacks=[AdvanceTest(), monitor(lit_api, meter)])
    results = trainer.test(make_module(lit_api), loader(6))
    assert results[0]["energy/test_joules"] == pytest.approx(8.0)
    assert results[0]["energy/test_joules_per_sample"] == pytest.approx(8.0 / 6)


def test_standalone_validate_logs_val_energy_and_closes_the_epoch(
    lit_api: Api, tmp_path: Path
) -> None:
    meter = FakeMeter((DOMAIN,))

    class AdvanceVal(lit_api.Callback):  # type: ignore[misc, name-defined]
        def on_validation_batch_end(self, *args: Any) -> None:
            meter.advance(3.0)

    summary_path = tmp_path / "run.json"
    mon = monitor(lit_api, meter)
    mon._summary_path = summary_path  # noqa: SLF001 - as if given to the constructor
    trainer = lit_api.trainer(tmp_path, callbacks=[AdvanceVal(), mon])
    results = trainer.validate(make_module(lit_api), loader(6))  # batch 4: 2 batches
    assert results[0]["energy/val_joules"] == pytest.approx(6.0)
    assert results[0]["energy/val_joules_per_sample"] == pytest.approx(1.0)
    epochs = mon.tracker.summary()["epochs"]
    assert [e["phases"]["validate"]["samples"] for e in epochs] == [6]


def test_meter_named_but_unavailable_raises_before_the_first_step(
    api: Api, tmp_path: Path
) -> None:
    from wattwise.meters import open_meters

    try:
        meters, _ = open_meters(["nvml"])
    except MeterUnavailableError:
        pass
    else:  # a machine with an NVIDIA GPU: nothing to test here
        for m in meters:
            m.close()
        pytest.skip("NVML is readable on this machine")
    steps: list[int] = []

    class CountSteps(api.Callback):  # type: ignore[misc, name-defined]
        def on_train_batch_start(self, *args: Any) -> None:
            steps.append(1)

    mon = api.EnergyMonitor(meters=["nvml"], print_summary=False, advice=False)
    trainer = api.trainer(tmp_path, callbacks=[CountSteps(), mon])
    with pytest.raises(MeterUnavailableError, match="NVML|nvml"):
        trainer.fit(make_module(api), loader(10))
    assert steps == []


def test_default_summary_lands_in_the_trainer_log_dir(api: Api, tmp_path: Path) -> None:
    meter = FakeMeter((DOMAIN,), joules_per_read=1.0)
    trainer = api.trainer(tmp_path, callbacks=[monitor(api, meter)])  # summary_path="auto"
    trainer.fit(make_module(api), loader(10))
    path = Path(trainer.log_dir) / "wattwise_summary.json"
    assert path.parent == tmp_path / "tb" / "version_0"
    s = json.loads(path.read_text())
    assert s["status"] == "completed" and s["epochs_completed"] == 2
    assert [e["phases"]["train"]["samples"] for e in s["epochs"]] == [10, 10]


def test_import_wattwise_lightning_imports_no_framework() -> None:
    code = (
        "import sys, wattwise, wattwise.lightning;"
        "heavy = [m for m in ('torch', 'lightning', 'pytorch_lightning') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_both_packages_get_their_own_callback_class() -> None:
    pytest.importorskip("lightning.pytorch")
    pytest.importorskip("pytorch_lightning")
    import lightning.pytorch as L
    import pytorch_lightning as PL

    from wattwise.lightning import EnergyMonitor
    from wattwise.lightning.pl import EnergyMonitor as PLEnergyMonitor

    assert issubclass(EnergyMonitor, L.Callback) and not issubclass(EnergyMonitor, PL.Callback)
    assert issubclass(PLEnergyMonitor, PL.Callback) and not issubclass(PLEnergyMonitor, L.Callback)
    import pickle

    mon = EnergyMonitor(print_summary=False)
    assert type(pickle.loads(pickle.dumps(mon))) is EnergyMonitor
    mon2 = PLEnergyMonitor(print_summary=False)
    assert type(pickle.loads(pickle.dumps(mon2))) is PLEnergyMonitor


def test_ddp_node_counters_counted_once(tmp_path: Path) -> None:
    """2 CPU processes (gloo) share one fake RAPL tree: the logged joules equal the tree's
    movement, not twice it, and the samples are the sum over both ranks."""
    pytest.importorskip("lightning.pytorch")
    zone = tmp_path / "powercap" / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text("5000000\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    script = Path(__file__).with_name("_ddp_script.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rank0 = json.loads((tmp_path / "metrics.rank0.json").read_text())
    rank1 = json.loads((tmp_path / "metrics.rank1.json").read_text())
    moved_j = (rank0["counter_uj"] - 5_000_000) / 1e6
    assert moved_j == pytest.approx(4.0)  # 2 epochs x 2 steps on rank 0 x 1 J
    # per epoch: 2 J moved, 16 samples over both ranks
    for metrics in (rank0, rank1):  # logged once, identical on every rank
        assert metrics["energy/train_joules"] == pytest.approx(2.0)
        assert metrics["energy/train_joules_per_sample"] == pytest.approx(2.0 / 16)
        assert metrics["energy/train_joules/cpu_package-0"] == pytest.approx(2.0)
