"""Joules per training sample of a small MLP on the bundled digits data, with Lightning.

Runs on CPU in well under a minute::

    python examples/lightning_mlp.py            # TensorBoard logs under ./lightning_logs
    tensorboard --logdir lightning_logs         # the energy/ scalars

On a machine with readable RAPL or an NVIDIA GPU the numbers are measured; elsewhere wattwise
falls back to an estimate (the same ``energy/...`` keys, with ``energy/estimated`` = 1.0) or
logs nothing, and says so in a warning - it never logs 0 J for unknown.
"""

from __future__ import annotations

import argparse

import lightning.pytorch as L
import torch

from wattwise.datasets import load_digits
from wattwise.lightning import EnergyMonitor


class MLP(L.LightningModule):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, width), torch.nn.ReLU(), torch.nn.Linear(width, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--summary", default="lightning_mlp_energy.json", help="run summary JSON")
    args = parser.parse_args()

    data = load_digits()

    def loader(x, y, shuffle):  # type: ignore[no-untyped-def]
        ds = torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
        return torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=shuffle)

    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="auto",
        enable_progress_bar=False,
        callbacks=[EnergyMonitor(summary_path=args.summary)],  # the one line
    )
    trainer.fit(MLP(), loader(data.x_train, data.y_train, True), loader(data.x_val, data.y_val, False))
    energy = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("energy")}
    print("energy metrics of the last epoch:", energy or "none (no meter available, see warnings)")


if __name__ == "__main__":
    main()
