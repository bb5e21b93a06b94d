"""Run by test_fabric_ddp_counts_node_counters_once: 2-process CPU DDP with Lightning Fabric.

Usage: python _fabric_ddp_script.py WORKDIR (with WATTWISE_RAPL_ROOT=WORKDIR/powercap). Fabric's
launcher re-runs this script for rank 1. Rank 0 moves the fake package counter by 1 J in every
training step; each rank writes the meters it read and its own train samples per epoch to
WORKDIR/published.rankN.json; rank 0's CSV logger holds what was logged (summed over ranks).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from lightning.fabric import Fabric
from lightning.fabric.loggers import CSVLogger

from wattwise.fabric import EnergyLogger
from wattwise.testing import set_rapl_energy


def main(workdir: Path) -> None:
    zone = workdir / "powercap" / "intel-rapl:0"
    fabric = Fabric(accelerator="cpu", devices=2, strategy="ddp",
                    loggers=CSVLogger(workdir, name="ddp"))
    fabric.launch()
    model = torch.nn.Linear(4, 2)
    model, opt = fabric.setup(model, torch.optim.SGD(model.parameters(), lr=0.1))
    g = torch.Generator().manual_seed(0)
    data = fabric.setup_dataloaders(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(
        torch.randn(16, 4, generator=g), torch.randint(0, 2, (16,), generator=g)), batch_size=4))
    energy = EnergyLogger(fabric, meters=["rapl"], summary_path=workdir / "run.json",
                          print_summary=False)
    published = []
    counter_uj = 5_000_000
    with energy:
        for _ in range(2):
            with energy.epoch() as epoch:
                with energy.phase("train"):
                    for x, y in data:  # 2 batches of 4 per rank
                        if fabric.global_rank == 0:
                            counter_uj += 1_000_000
                            set_rapl_energy(zone, counter_uj)
                        opt.zero_grad()
                        fabric.backward(torch.nn.functional.cross_entropy(model(x), y))
                        opt.step()
                        energy.count_batch(x)
            rec = epoch.record
            published.append({"meters": sorted(m.name for m in energy.tracker.meters),
                              "samples": None if rec is None else rec.phases["train"].samples})
    fabric.logger.finalize("success")
    (workdir / f"published.rank{fabric.global_rank}.json").write_text(json.dumps(published))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
