"""Run by test_ddp_node_counters_counted_once: 2-process CPU DDP (gloo) over a fake RAPL tree.

Usage: python _ddp_script.py WORKDIR. Lightning's ``ddp`` launcher re-runs this script for rank 1.
Rank 0 moves the tree's ``energy_uj`` by 1 J in every training step (before the gradient
all-reduce, so rank 1 cannot finish that step before the counter has moved) and writes the
logged metrics to WORKDIR/metrics.rank0.json; rank 1 writes its own metrics file.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import lightning.pytorch as L
import torch

from wattwise.lightning import EnergyMonitor
from wattwise.meters import RaplMeter

UJ_PER_STEP = 1_000_000  # 1 J


def main(workdir: Path) -> None:
    root = workdir / "powercap"
    counter = root / "intel-rapl:0" / "energy_uj"

    class Model(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            if self.global_rank == 0:
                value = int(counter.read_text()) + UJ_PER_STEP
                with open(counter, "r+") as f:  # in place: the meter keeps the file open
                    f.write(f"{value}\n")
                    f.truncate()
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g))
    dl = torch.utils.data.DataLoader(ds, batch_size=4)  # Lightning adds a DistributedSampler: 8 samples/rank
    mon = EnergyMonitor(meters=[RaplMeter(root=root)], print_summary=False, advice=False,
                        summary_path=workdir / "run.json")
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", max_epochs=2, logger=False, callbacks=[mon],
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Model(), dl)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    metrics["counter_uj"] = float(counter.read_text())
    (workdir / f"metrics.rank{trainer.global_rank}.json").write_text(json.dumps(metrics))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
