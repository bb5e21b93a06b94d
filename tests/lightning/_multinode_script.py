"""Run by test_multinode.py: one "node" of a 2-node CPU DDP run (gloo) on localhost.

Usage: python _multinode_script.py WORKDIR NODE_RANK UJ_PER_STEP

The test launches this script twice, with ``NODE_RANK``, ``LOCAL_RANK=0``, ``MASTER_ADDR`` and
``MASTER_PORT`` in the environment: ``LOCAL_RANK`` tells Lightning's ``LightningEnvironment`` that
the processes are created externally (so it launches no children of its own), ``NODE_RANK``
makes this process global rank ``NODE_RANK`` (``devices=1``), and the world size comes from
``devices * num_nodes``.

Each node reads its own fake powercap tree, ``WORKDIR/node<NODE_RANK>/powercap``, and only this
process moves it: by ``UJ_PER_STEP`` µJ at the start of every ``training_step`` (so only inside
the train window; validation and the time between windows leave it still). The logged metrics,
the counter's value and a checksum of the trained weights go to
``WORKDIR/metrics.node<NODE_RANK>.json``; the run summary to ``WORKDIR/run.json`` (global rank 0)
or ``WORKDIR/run.rank1.json``.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import lightning.pytorch as L
import torch

from wattwise.lightning import EnergyMonitor
from wattwise.meters import RaplMeter

N_SAMPLES = 16  # global; the DistributedSampler gives each of the 2 ranks 8
BATCH = 4  # -> 2 training steps per rank and epoch
EPOCHS = 2


def move_counter(counter: Path, delta_uj: int) -> None:
    """Add ``delta_uj`` to a fake ``energy_uj`` in place (one fixed-width pwrite: same inode, so
    the meter's open fd sees it, and its poll thread never reads a half-written value)."""
    fd = os.open(counter, os.O_RDWR)
    try:
        value = int(os.pread(fd, 64, 0))
        os.pwrite(fd, f"{value + delta_uj:020d}\n".encode(), 0)
    finally:
        os.close(fd)


def main(workdir: Path, node_rank: int, uj_per_step: int) -> None:
    root = workdir / f"node{node_rank}" / "powercap"
    counter = root / "intel-rapl:0" / "energy_uj"
    steps = []

    class Model(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(4, 2)

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            move_counter(counter, uj_per_step)
            steps.append((self.current_epoch, batch_idx))
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.SGD(self.parameters(), lr=0.1)

    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(
        torch.randn(N_SAMPLES, 4, generator=g), torch.randint(0, 2, (N_SAMPLES,), generator=g)
    )
    dl = torch.utils.data.DataLoader(ds, batch_size=BATCH)
    val = torch.utils.data.DataLoader(ds, batch_size=BATCH)  # a validation phase, counter still
    mon = EnergyMonitor(meters=[RaplMeter(root=root)], print_summary=False, advice=False,
                        summary_path=workdir / "run.json")
    trainer = L.Trainer(
        accelerator="cpu", devices=1, num_nodes=2, strategy="ddp", max_epochs=EPOCHS,
        logger=False, callbacks=[mon], enable_progress_bar=False, enable_model_summary=False,
        enable_checkpointing=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(Model(), dl, val)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    out = {
        "metrics": metrics,
        "counter_uj": int(counter.read_text()),
        "global_rank": trainer.global_rank,
        "local_rank": trainer.local_rank,
        "node_rank": trainer.node_rank,
        "world_size": trainer.world_size,
        "steps": steps,
        "weights": [float(p.detach().sum()) for p in trainer.lightning_module.parameters()],
    }
    (workdir / f"metrics.node{node_rank}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
