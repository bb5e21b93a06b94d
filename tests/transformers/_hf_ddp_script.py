"""Run by test_ddp_node_counters_counted_once (tests/transformers): a 2-process CPU DDP (gloo)
transformers.Trainer run over one fake RAPL tree, started with ``torch.distributed.run``.

Usage: python -m torch.distributed.run --nproc_per_node 2 _hf_ddp_script.py WORKDIR.
Rank 0 moves the tree's counter by 1 J at the start of every optimizer step; each rank writes
its energy entries of ``state.log_history`` to WORKDIR/history.rankN.json.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback
from wattwise_hf_helpers import make_trainer

from wattwise.meters import RaplMeter
from wattwise.testing import set_rapl_energy
from wattwise.transformers import EnergyMonitor


def main(workdir: Path) -> None:
    zone = workdir / "powercap" / "intel-rapl:0"

    class Bump(TrainerCallback):  # type: ignore[misc]
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if args.process_index == 0:
                now = int((zone / "energy_uj").read_text())
                set_rapl_energy(zone, now + 1_000_000)

    monitor = EnergyMonitor(meters=[RaplMeter(root=workdir / "powercap")], print_summary=False,
                            advice=False, summary_path=workdir / "run.json")
    # 32 samples, batches of 4, 2 ranks: 4 steps per rank per epoch
    trainer = make_trainer(workdir, [monitor, Bump()], n_train=32, n_eval=8, num_train_epochs=1,
                           per_device_train_batch_size=4, per_device_eval_batch_size=4,
                           eval_strategy="epoch", report_to=[], ddp_backend="gloo")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train()
    rank = trainer.args.process_index
    history = [e for e in trainer.state.log_history if any("energy_" in k for k in e)]
    (workdir / f"history.rank{rank}.json").write_text(json.dumps(
        {"history": history, "world_size": trainer.args.world_size,
         "counter_uj": int((zone / "energy_uj").read_text())}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
