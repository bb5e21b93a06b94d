"""Regression tests of the run state the Lightning EnergyMonitor keeps across stages, runs,
checkpoints and failures (run summary schema version 2). Tiny real ``Trainer.fit`` runs on CPU.

Summary v2, as far as these tests read it: ``stages`` lists the stages the monitor saw in a run
(``{"stage", "status", "error", "resumed_from", "epochs_completed", "totals", ...}``); every
record of ``epochs`` names its ``stage``, its ``stage_index`` into ``stages`` and whether it is
``complete``; the top-level ``epochs_completed`` counts complete training (fit) epochs only.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from _wattwise_lit import Api, loader, make_module

from wattwise.errors import MeterWarning, WattwiseWarning
from wattwise.testing import FakeMeter

torch = pytest.importorskip("torch")

DOMAIN = "cpu:package-0"


def advancer(api: Api, advance: Any, train_j: float = 2.0, test_j: float = 4.0) -> Any:
    """A callback that calls ``advance(joules)`` after every training and test batch."""

    class Advance(api.Callback):  # type: ignore[misc, name-defined]
        def on_train_batch_end(self, *args: Any) -> None:
            advance(train_j)

        def on_test_batch_end(self, *args: Any) -> None:
            advance(test_j)

    return Advance()


def monitor(api: Api, meter: Any, **kwargs: Any) -> Any:
    kwargs.setdefault("print_summary", False)
    kwargs.setdefault("advice", False)
    return api.EnergyMonitor(meters=[meter], **kwargs)


def read(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def fit_epochs(summary: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The summary's fit epoch records by epoch number."""
    return {e["epoch"]: e for e in summary["epochs"] if e["stage"] == "fit"}


def wattwise_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WattwiseWarning)]


def fake_rapl_tree(root: Path, energy_uj: int = 5_000_000) -> Path:
    """One powercap package zone written like sysfs; returns the zone folder."""
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text("package-0\n")
    (zone / "energy_uj").write_text(f"{energy_uj:020d}\n")
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    return zone


def rapl_advance(zone: Path) -> Any:
    """``advance(joules)`` for a fake zone: moves its counter in place (one pwrite, same inode,
    fixed width, so the meter's open file descriptor never sees a half-written value)."""

    def advance(joules: float) -> None:
        uj = int((zone / "energy_uj").read_text()) + round(joules * 1e6)
        fd = os.open(zone / "energy_uj", os.O_WRONLY)
        try:
            os.pwrite(fd, f"{uj:020d}\n".encode(), 0)
        finally:
            os.close(fd)

    return advance


# --------------------------------------------------------------------------------------------
def test_test_after_fit_keeps_the_fit_in_the_default_summary(lit_api: Api, tmp_path: Path) -> None:
    """Bug: ``trainer.test()`` after ``trainer.fit()`` overwrote the fit's run summary in
    ``trainer.log_dir`` with the test alone. Both stages belong to one summary."""
    meter = FakeMeter((DOMAIN,))
    trainer = lit_api.trainer(
        tmp_path,
        callbacks=[advancer(lit_api, meter.advance), monitor(lit_api, meter)],
        max_epochs=3,
        logger=True,
        default_root_dir=str(tmp_path),
    )
    module = make_module(lit_api)
    trainer.fit(module, loader(10))
    trainer.test(module, loader(6))

    path = tmp_path / "lightning_logs" / "version_0" / "wattwise_summary.json"
    s = read(path)
    assert s["epochs_completed"] == 3
    assert [sorted(e["phases"]) for e in s["epochs"]] == [["train"]] * 3 + [["test"]]
    assert {"train", "test"} <= set(s["totals"]["phases"])
    assert [st["stage"] for st in s["stages"]] == ["fit", "test"]
    assert [(e["stage"], e["stage_index"]) for e in s["epochs"]] == [("fit", 0)] * 3 + [("test", 1)]
    assert [e["complete"] for e in s["epochs"]] == [True] * 4


@pytest.mark.parametrize("kind", ["fake", "rapl"])
def test_user_meter_stays_open_after_fit_for_test(lit_api: Api, tmp_path: Path, kind: str) -> None:
    """Bug: the end of ``fit`` closed the Meter instances the user passed, so a following
    ``trainer.test()`` could not read them (a MeterWarning "meter is closed", no test joules)."""
    from wattwise.meters import RaplMeter

    meter: Any
    if kind == "fake":
        meter = FakeMeter((DOMAIN,))
        advance = meter.advance
    else:
        zone = fake_rapl_tree(tmp_path / "powercap")
        meter = RaplMeter(root=tmp_path / "powercap")
        advance = rapl_advance(zone)
    path = tmp_path / "s.json"
    trainer = lit_api.trainer(
        tmp_path,
        callbacks=[advancer(lit_api, advance), monitor(lit_api, meter, summary_path=path)],
        max_epochs=1,
    )
    module = make_module(lit_api)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.fit(module, loader(10))
            meter.read()  # raises MeterReadError if wattwise closed the user's meter
            results = trainer.test(module, loader(6))  # batches of 4: 2 batches x 4 J
    finally:
        meter.close()

    closed = [
        str(w.message)
        for w in caught
        if issubclass(w.category, MeterWarning) and "closed" in str(w.message)
    ]
    assert closed == []
    assert results[0]["energy/test_joules"] == pytest.approx(8.0)
    test_totals = read(path)["totals"]["phases"]["test"]
    assert test_totals["joules"] == pytest.approx(8.0)


def test_resume_from_mid_epoch_checkpoint_counts_every_batch_once(
    lit_api: Api, tmp_path: Path
) -> None:
    """Bug: a checkpoint saved in the middle of an epoch held the totals of finished epochs
    only, so resuming from it lost the joules and samples of the epoch's first batches."""
    loader64 = loader(64)  # 16 batches of 4 per epoch

    # a straight run: 2 epochs x 16 batches x 1 J
    meter = FakeMeter((DOMAIN,))
    trainer = lit_api.trainer(
        tmp_path / "straight",
        callbacks=[
            advancer(lit_api, meter.advance, 1.0),
            monitor(lit_api, meter, summary_path=tmp_path / "straight.json"),
        ],
    )
    trainer.fit(make_module(lit_api), loader64)
    straight = read(tmp_path / "straight.json")["totals"]["phases"]["train"]
    assert straight["joules"] == pytest.approx(32.0)

    # the same run, checkpointed every 12 steps, crashing at global step 27 (epoch 1, batch 11)
    meter = FakeMeter((DOMAIN,))
    ckpt = lit_api.callbacks.ModelCheckpoint(
        dirpath=str(tmp_path / "ckpt"), every_n_train_steps=12, save_top_k=-1
    )
    trainer = lit_api.trainer(
        tmp_path / "crash",
        callbacks=[
            advancer(lit_api, meter.advance, 1.0),
            monitor(lit_api, meter, summary_path=tmp_path / "crash.json"),
            ckpt,
        ],
        enable_checkpointing=True,
    )
    with pytest.raises(RuntimeError, match="boom from the test"):
        trainer.fit(make_module(lit_api, fail_at=(1, 11)), loader64)
    step24 = tmp_path / "ckpt" / "epoch=1-step=24.ckpt"
    assert step24.exists()

    # resumed with a new Trainer and a new EnergyMonitor on the same meter: batches 8..15 of epoch 1
    trainer = lit_api.trainer(
        tmp_path / "resumed",
        callbacks=[
            advancer(lit_api, meter.advance, 1.0),
            monitor(lit_api, meter, summary_path=tmp_path / "resumed.json"),
        ],
    )
    trainer.fit(make_module(lit_api), loader64, ckpt_path=str(step24))
    resumed = read(tmp_path / "resumed.json")
    train = resumed["totals"]["phases"]["train"]
    assert train["joules"] == pytest.approx(32.0, abs=1.0)
    assert abs(train["samples"] - straight["samples"]) <= 4  # within one batch
    assert "train" in fit_epochs(resumed)[1]["phases"]


def test_second_fit_with_the_same_monitor_is_a_new_run(lit_api: Api, tmp_path: Path) -> None:
    """Bug: a second ``fit`` with the same EnergyMonitor (a new Trainer) continued the first
    run's totals as if resumed from a checkpoint (samples doubled) and overwrote its summary.
    Documented: the second run writes ``s.run2.json`` beside ``s.json``."""
    meter = FakeMeter((DOMAIN,))
    path = tmp_path / "s.json"
    mon = monitor(lit_api, meter, summary_path=path)
    adv = advancer(lit_api, meter.advance, 2.0)

    lit_api.trainer(tmp_path / "one", callbacks=[adv, mon]).fit(make_module(lit_api), loader(10))
    first = read(path)
    lit_api.trainer(tmp_path / "two", callbacks=[adv, mon]).fit(make_module(lit_api), loader(10))

    assert read(path) == first  # the first run's file is left alone
    second = read(tmp_path / "s.run2.json")
    assert second["status"] == "completed"
    assert second.get("resumed_from") is None
    assert [st["resumed_from"] for st in second["stages"]] == [None]
    one, two = first["totals"]["phases"]["train"], second["totals"]["phases"]["train"]
    assert one["samples"] == 20  # 2 epochs x 10 samples
    assert two["samples"] == one["samples"]
    assert two["joules"] == pytest.approx(one["joules"])


def test_failed_fit_counts_only_complete_epochs(lit_api: Api, tmp_path: Path) -> None:
    """Bug: a fit failing in the middle of epoch 1 reported ``epochs_completed == 2``, the
    interrupted epoch counted as done."""
    meter = FakeMeter((DOMAIN,))
    path = tmp_path / "run.json"
    trainer = lit_api.trainer(
        tmp_path,
        callbacks=[advancer(lit_api, meter.advance), monitor(lit_api, meter, summary_path=path)],
        max_epochs=3,
    )
    with pytest.raises(RuntimeError, match="boom from the test"):
        trainer.fit(make_module(lit_api, fail_at=(1, 1)), loader(10))

    s = read(path)
    assert s["status"] == "failed"
    assert "RuntimeError" in s["error"] and "boom from the test" in s["error"]
    assert s["epochs_completed"] == 1
    assert [st["status"] for st in s["stages"]] == ["failed"]
    epochs = fit_epochs(s)
    assert epochs[0]["complete"] is True
    assert epochs[1]["complete"] is False


class OpaqueBatch:
    """A batch Lightning cannot measure: no ``__len__``, not a tensor, sequence or mapping."""

    def __init__(self, x: Any, y: Any) -> None:
        self.x, self.y = x, y


def collate_opaque(items: list[Any]) -> OpaqueBatch:
    return OpaqueBatch(torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items]))


def opaque_val_module(api: Api) -> Any:
    """A 4 -> 2 linear classifier whose validation_step unpacks an OpaqueBatch."""

    class Module(api.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 2)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch: OpaqueBatch, batch_idx: int) -> Any:
            loss = torch.nn.functional.cross_entropy(self.net(batch.x), batch.y)
            self.log("val_loss", loss, batch_size=batch.x.shape[0])
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return Module()


def test_uncountable_validation_batch_warns_once_and_keeps_training(
    lit_api: Api, tmp_path: Path
) -> None:
    """Bug: a validation batch whose samples cannot be counted made the monitor raise and kill
    a fit that works without it. Measurement never kills training: one warning, and no
    validation joules per sample (never 0, never a guess)."""
    val = loader(6, collate_fn=collate_opaque)
    plain = lit_api.trainer(tmp_path / "plain", max_epochs=1)
    plain.fit(opaque_val_module(lit_api), loader(10), val)  # works without the monitor

    meter = FakeMeter((DOMAIN,), joules_per_read=1.0)
    path = tmp_path / "run.json"
    trainer = lit_api.trainer(tmp_path, callbacks=[monitor(lit_api, meter, summary_path=path)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(opaque_val_module(lit_api), loader(10), val)  # 2 epochs x 2 val batches

    assert trainer.state.finished and trainer.current_epoch == 2
    about_samples = [m for m in wattwise_warnings(caught) if "sample" in m.lower()]
    assert len(about_samples) == 1, about_samples
    metrics = trainer.callback_metrics
    assert "energy/val_joules_per_sample" not in metrics
    assert "energy/train_joules" in metrics and "energy/train_joules_per_sample" in metrics
    validate = read(path)["totals"]["phases"]["validate"]
    assert validate["samples"] is None and validate["joules_per_sample"] is None


def test_no_logger_and_auto_summary_path_writes_no_summary_in_cwd(
    lit_api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: with ``Trainer(logger=False)`` and ``summary_path="auto"`` the summary landed in
    the current directory (``trainer.log_dir`` falls back to it). No log dir: no summary, and
    one warning that says how to get one."""
    monkeypatch.chdir(tmp_path)
    meter = FakeMeter((DOMAIN,), joules_per_read=1.0)
    trainer = lit_api.trainer(tmp_path, callbacks=[monitor(lit_api, meter)], logger=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(make_module(lit_api), loader(10))

    assert trainer.state.finished
    assert "energy/train_joules" in trainer.callback_metrics  # the monitor did measure
    assert list(tmp_path.rglob("wattwise_summary*.json")) == []
    ours = wattwise_warnings(caught)
    no_summary = [m for m in ours if "summary_path" in m]
    assert len(no_summary) == 1, no_summary
    assert not any("cannot write" in m for m in ours), ours  # not a failed write either


def test_a_failing_logger_is_one_warning_not_a_crash(lit_api: Api, tmp_path: Path) -> None:
    """Publishing the metrics fails (a logger raising): the fit completes, with one warning,
    and the summary still has every epoch."""

    class Broken(lit_api.loggers.CSVLogger):  # type: ignore[misc, name-defined]
        def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
            if any(k.startswith("energy/") for k in metrics):
                raise OSError("disk full")
            super().log_metrics(metrics, step)

    meter = FakeMeter((DOMAIN,))
    mon = monitor(lit_api, meter, summary_path=tmp_path / "s.json")
    trainer = lit_api.trainer(tmp_path, callbacks=[advancer(lit_api, meter.advance), mon],
                              max_epochs=3, logger=Broken(tmp_path / "csv"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(make_module(lit_api), loader(10))
    assert trainer.current_epoch == 3
    failures = [m for m in wattwise_warnings(caught) if "disk full" in m]
    assert len(failures) == 1 and "logging the energy metrics" in failures[0]
    assert read(tmp_path / "s.json")["status"] == "completed"
