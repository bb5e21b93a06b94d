"""``wattwise.fabric.EnergyLogger`` with a real ``Fabric(accelerator="cpu", devices=1)``: the
metrics ``fabric.log_dict`` wrote are read back from the CSV logger's file."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("lightning.fabric")
import torch  # noqa: E402
from lightning.fabric import Fabric  # noqa: E402
from lightning.fabric.loggers import CSVLogger  # noqa: E402

from wattwise.errors import ConfigurationError  # noqa: E402
from wattwise.fabric import EnergyLogger  # noqa: E402
from wattwise.testing import FakeMeter  # noqa: E402


def _fit(tmp_path: Path, epochs: int, fail_at: int | None = None
         ) -> tuple[Fabric, EnergyLogger, FakeMeter]:
    fabric = Fabric(accelerator="cpu", devices=1, loggers=CSVLogger(tmp_path, name="run"))
    fabric.launch()
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    model, opt = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    data = fabric.setup_dataloaders(torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(24, 4), torch.randint(0, 2, (24,))),
        batch_size=8))
    meter = FakeMeter(("cpu:package-0",))
    energy = EnergyLogger(fabric, meters=[meter], print_summary=False)
    with energy:
        for epoch in range(epochs):
            with energy.epoch():
                with energy.phase("train"):
                    for x, y in data:
                        opt.zero_grad()
                        fabric.backward(torch.nn.functional.cross_entropy(model(x), y))
                        opt.step()
                        energy.count_batch((x, y))
                        meter.advance(3.0)  # 3 J per batch of 8: 0.375 J/sample
                        if epoch == fail_at:
                            raise RuntimeError("diverged")
                with energy.phase("validate"), torch.no_grad():
                    energy.add_batch(24)
                    meter.advance(1.2)
    fabric.logger.finalize("success")
    return fabric, energy, meter


def test_epoch_metrics_reach_the_fabric_logger(tmp_path: Path) -> None:
    fabric, energy, _ = _fit(tmp_path, epochs=2)
    log_dir = Path(fabric.logger.log_dir)
    rows = list(csv.DictReader((log_dir / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [0, 1]
    for r in rows:
        assert float(r["energy/train_joules"]) == pytest.approx(9.0)
        assert float(r["energy/train_joules_per_sample"]) == pytest.approx(0.375)
        assert float(r["energy/train_joules/cpu_package-0"]) == pytest.approx(9.0)
        assert float(r["energy/val_joules_per_sample"]) == pytest.approx(0.05)
        assert float(r["energy/train_watts"]) > 0
    summary = json.loads((log_dir / "wattwise_summary.json").read_text())  # summary_path="auto"
    assert summary["status"] == "completed" and summary["epochs_completed"] == 2
    assert summary["metadata"]["framework"] == "lightning.fabric"
    assert summary["totals"]["phases"]["train"]["samples"] == 48
    assert energy.tracker.status == "completed"


def test_a_failing_loop_is_recorded_and_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="diverged"):
        _fit(tmp_path, epochs=2, fail_at=1)
    summary = json.loads(next(tmp_path.rglob("wattwise_summary.json")).read_text())
    assert summary["status"] == "failed" and "diverged" in summary["error"]
    assert [e["complete"] for e in summary["epochs"]] == [True, False]


def test_not_a_fabric_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="EnergyLogger\\(fabric="):
        EnergyLogger(object())


def test_step_level_energy_is_logged(tmp_path: Path) -> None:
    fabric = Fabric(accelerator="cpu", devices=1, loggers=CSVLogger(tmp_path, name="steps"))
    fabric.launch()
    meter = FakeMeter(("cpu:package-0",))
    energy = EnergyLogger(fabric, meters=[meter], summary_path=None, print_summary=False,
                          log_every_n_steps=2, min_window_s=0.0)
    steps = []
    with energy, energy.epoch(step=100), energy.phase("train"):
        for _ in range(4):
            meter.advance(1.0)
            rec = energy.count_batch(torch.zeros(5, 3))
            if rec is not None:
                steps.append((rec.step, rec.joules, rec.samples))
    fabric.logger.finalize("success")
    assert steps == [(1, 2.0, 10), (3, 2.0, 10)]
    rows = list(csv.DictReader((Path(fabric.logger.log_dir) / "metrics.csv").open()))
    step_rows = [r for r in rows if r.get("energy/train_step_joules")]
    assert [(int(r["step"]), float(r["energy/train_step_joules"])) for r in step_rows] == [
        (1, 2.0), (3, 2.0)]
    [epoch_row] = [r for r in rows if r.get("energy/train_joules")]
    assert int(epoch_row["step"]) == 100 and float(epoch_row["energy/train_joules"]) == 4.0


def test_fabric_ddp_counts_node_counters_once(tmp_path: Path) -> None:
    """2-process CPU DDP: RAPL read on local rank 0 only, samples summed over both ranks."""
    import os
    import subprocess
    import sys

    from wattwise.testing import fake_rapl_zone

    fake_rapl_zone(tmp_path / "powercap" / "intel-rapl:0", "package-0", 5_000_000)
    script = Path(__file__).with_name("_fabric_ddp_script.py")
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, WATTWISE_RAPL_ROOT=str(tmp_path / "powercap"),
               PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    rank0 = json.loads((tmp_path / "published.rank0.json").read_text())
    rank1 = json.loads((tmp_path / "published.rank1.json").read_text())
    assert [e["meters"] for e in rank0] == [["rapl"]] * 2 and [e["meters"] for e in rank1] == [[]] * 2
    assert [e["samples"] for e in rank0 + rank1] == [8] * 4
    rows = list(csv.DictReader(next(tmp_path.rglob("metrics.csv")).open()))
    assert [int(r["step"]) for r in rows] == [0, 1]
    for r in rows:  # 2 J per epoch (rank 0's counter), 16 samples over both ranks
        assert float(r["energy/train_joules"]) == pytest.approx(2.0)
        assert float(r["energy/train_joules_per_sample"]) == pytest.approx(2.0 / 16)
    assert (tmp_path / "run.json").exists() and (tmp_path / "run.rank1.json").exists()
