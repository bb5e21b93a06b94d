"""A real TensorBoard server, on a loopback port, serves the energy scalars a short training wrote.

Lightning + ``EnergyMonitor`` + a ``FakeMeter`` whose counter the model itself moves (1 J per
training batch, 0.25 J per validation batch), so the expected values are exact. Then
``python -m tensorboard.main`` is started against the log folder and its HTTP API is polled
(bounded) until the scalars are there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tensorboard")
torch = pytest.importorskip("torch")
pl = pytest.importorskip("lightning.pytorch")

from wattwise.testing import FakeMeter  # noqa: E402

TRAIN_J_PER_BATCH = 1.0
VAL_J_PER_BATCH = 0.25
N_TRAIN, N_VAL, BATCH = 40, 16, 8  # 5 train batches, 2 val batches per epoch
EPOCHS = 2


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _train(log_root: Path) -> None:
    from lightning.pytorch.loggers import TensorBoardLogger
    from torch import nn
    from torch.utils.data import DataLoader, TensorDataset

    from wattwise.lightning import EnergyMonitor

    meter = FakeMeter(("cpu:package-0",))

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(4, 2)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            meter.advance(TRAIN_J_PER_BATCH)
            x, y = batch
            return nn.functional.cross_entropy(self.layer(x), y)

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            meter.advance(VAL_J_PER_BATCH)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    def loader(n: int) -> DataLoader:
        ds = TensorDataset(torch.randn(n, 4, generator=g), torch.randint(0, 2, (n,), generator=g))
        return DataLoader(ds, batch_size=BATCH)

    trainer = pl.Trainer(
        max_epochs=EPOCHS, logger=TensorBoardLogger(str(log_root), name="tb", version="run0"),
        callbacks=[EnergyMonitor([meter], advice=False, print_summary=False)],
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, accelerator="cpu", devices=1, log_every_n_steps=1,
    )
    trainer.fit(Tiny(), loader(N_TRAIN), loader(N_VAL))


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # loopback only
        return json.loads(resp.read().decode())


def test_tensorboard_serves_energy_scalars(tmp_path: Path) -> None:
    _train(tmp_path)
    logdir = tmp_path / "tb"
    assert list(logdir.rglob("events.out.tfevents.*")), "no event file written"
    port = _free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port),
         "--host", "127.0.0.1", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        tags: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"tensorboard exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                tags = _get(f"{base}/data/plugin/scalars/tags")
            except (urllib.error.URLError, ConnectionError, json.JSONDecodeError):
                tags = {}
            if "energy/train_joules" in tags.get("run0", {}):
                break
            time.sleep(0.5)
        assert "run0" in tags, f"tensorboard did not list the run within 60 s: {tags!r}"
        run_tags = tags["run0"]
        for tag in ("energy/train_joules", "energy/train_joules_per_sample",
                    "energy/train_watts", "energy/val_joules", "energy/val_joules_per_sample"):
            assert tag in run_tags, f"{tag} missing from {sorted(run_tags)}"
        assert "energy/estimated" in run_tags  # measured or not: one key of its own

        def values(tag: str) -> list[float]:
            q = urllib.parse.urlencode({"run": "run0", "tag": tag})
            return [v for _, _, v in _get(f"{base}/data/plugin/scalars/scalars?{q}")]

        n_train_batches, n_val_batches = N_TRAIN // BATCH, N_VAL // BATCH
        train_j = values("energy/train_joules")
        assert train_j == pytest.approx([n_train_batches * TRAIN_J_PER_BATCH] * EPOCHS)
        assert values("energy/train_joules_per_sample") == pytest.approx(
            [n_train_batches * TRAIN_J_PER_BATCH / N_TRAIN] * EPOCHS)
        assert values("energy/val_joules") == pytest.approx(
            [n_val_batches * VAL_J_PER_BATCH] * EPOCHS)
        assert values("energy/val_joules_per_sample") == pytest.approx(
            [n_val_batches * VAL_J_PER_BATCH / N_VAL] * EPOCHS)
        assert all(w > 0 for w in values("energy/train_watts"))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
