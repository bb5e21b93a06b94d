"""Shared pieces of the Lightning tests: a tiny real model, tiny data, TensorBoard readback."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

PACKAGES = ("lightning.pytorch", "pytorch_lightning")


class Api:
    """The pieces of one Lightning package a test needs, plus the matching EnergyMonitor."""

    def __init__(self, package: str) -> None:
        self.package = package
        self.pl = importlib.import_module(package)
        self.Trainer = self.pl.Trainer
        self.Callback = self.pl.Callback
        self.LightningModule = self.pl.LightningModule
        self.callbacks = importlib.import_module(f"{package}.callbacks")
        self.loggers = importlib.import_module(f"{package}.loggers")
        if package == "lightning.pytorch":
            from wattwise.lightning import EnergyMonitor
        else:
            from wattwise.lightning.pl import EnergyMonitor
        self.EnergyMonitor = EnergyMonitor

    def trainer(self, tmp_path: Path, **kwargs: Any) -> Any:
        opts: dict[str, Any] = dict(
            accelerator="cpu",
            devices=1,
            max_epochs=2,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            logger=self.loggers.TensorBoardLogger(str(tmp_path), name="tb", version=0),
            log_every_n_steps=1,
        )
        opts.update(kwargs)
        return self.Trainer(**opts)


def make_module(api: Api, fail_at: tuple[int, int] | None = None, exc: type[BaseException] = RuntimeError) -> Any:
    """A 4 -> 8 -> 2 MLP. ``fail_at=(epoch, batch_idx)`` raises ``exc`` in training_step there."""

    class TinyMLP(api.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)
            )

        def forward(self, x: Any) -> Any:
            return self.net(x)

        def _loss(self, batch: Any) -> Any:
            x, y = (batch.x, batch.y) if hasattr(batch, "x") else batch
            return torch.nn.functional.cross_entropy(self(x), y)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if fail_at is not None and (self.current_epoch, batch_idx) == fail_at:
                raise exc("boom from the test")
            return self._loss(batch)

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            loss = self._loss(batch)
            self.log("val_loss", loss)
            return loss

        def test_step(self, batch: Any, batch_idx: int) -> Any:
            return self._loss(batch)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    return TinyMLP()


def loader(n: int, batch_size: int = 4, collate_fn: Any = None) -> Any:
    """``n`` samples in batches of ``batch_size`` (the last batch partial when it does not divide)."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    ds = torch.utils.data.TensorDataset(x, y)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=collate_fn)


def read_tensorboard(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """All scalar tags under ``log_dir`` read back from the event files on disk."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(Path(log_dir).rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {log_dir}"
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return out


def read_text(log_dir: Path) -> dict[str, list[str]]:
    """All TensorBoard text entries under ``log_dir``, read back from the event files on disk."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    out: dict[str, list[str]] = {}
    for f in sorted(Path(log_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(f), size_guidance={"tensors": 0})
        acc.Reload()
        for tag in acc.PluginTagToContent("text"):
            out.setdefault(tag, []).extend(
                tensor_util.make_ndarray(e.tensor_proto).item().decode() for e in acc.Tensors(tag))
    return out


def shared_dir() -> Path:
    env = os.environ.get("WATTWISE_SHARED")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared"
