"""Joules per training sample of a Lightning Fabric loop, logged with ``fabric.log_dict``.

Runs on CPU in seconds::

    python examples/lightning_fabric_mlp.py                 # CSV logs under ./fabric_logs
    cat fabric_logs/mlp/version_0/metrics.csv     # energy/train_joules_per_sample, ...

``EnergyLogger(fabric)`` reads node-wide counters once per node and NVML for the GPU each
rank trains on, sums the ranks' records and logs them on rank 0 at each epoch's end; the run
summary lands next to the logs (``wattwise_summary.json``).
"""

from __future__ import annotations

import argparse

import torch
from lightning.fabric import Fabric
from lightning.fabric.loggers import CSVLogger

from wattwise.datasets import load_digits
from wattwise.fabric import EnergyLogger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    fabric = Fabric(accelerator="cpu", devices=1, loggers=CSVLogger("fabric_logs", name="mlp"))
    fabric.launch()
    fabric.seed_everything(0)
    data = load_digits()
    train = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)),
        batch_size=args.batch_size, shuffle=True)
    val = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(data.x_val), torch.from_numpy(data.y_val)),
        batch_size=256)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model, opt = fabric.setup(model, torch.optim.Adam(model.parameters(), lr=1e-3))
    train, val = fabric.setup_dataloaders(train, val)

    with EnergyLogger(fabric) as energy:  # one run: ends "completed" or "failed"
        for epoch in range(args.epochs):
            with energy.epoch():  # logs energy/train_..., energy/val_... at its end
                with energy.phase("train"):
                    model.train()
                    for x, y in train:
                        opt.zero_grad()
                        loss = torch.nn.functional.cross_entropy(model(x), y)
                        fabric.backward(loss)
                        opt.step()
                        energy.count_batch(x)
                with energy.phase("validate"), torch.no_grad():
                    model.eval()
                    correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in val)
                    energy.add_batch(len(val.dataset))
            fabric.log_dict({"val_acc": correct / len(val.dataset)}, step=epoch)
    fabric.logger.finalize("success")
    train_joules = energy.tracker.totals()["train"]
    print(f"train: {train_joules.joules_per_sample} J/sample over {train_joules.samples} samples"
          + (" (estimate)" if train_joules.estimated else ""))


if __name__ == "__main__":
    main()
