"""Lightning ``num_nodes=2`` for real: two processes on localhost, each a node with its own RAPL.

The test is the job scheduler: it starts ``_multinode_script.py`` twice with ``NODE_RANK=0`` /
``NODE_RANK=1``, ``LOCAL_RANK=0`` (Lightning then launches nothing itself), ``MASTER_ADDR`` and a
free ``MASTER_PORT``; the two processes train together over gloo. Each node has its own fake
powercap tree with a same-named zone (``package-0``), moved by its own process by a different
known amount inside ``training_step`` only. Each node's counter must be counted once (by its
local rank 0) and the nodes must add up, identically on both ranks.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import wattwise

pytest.importorskip("lightning.pytorch")

SCRIPT = Path(__file__).with_name("_multinode_script.py")
# the folder the wattwise under test was imported from (the working tree's src/ under
# PYTHONPATH=src, the installed wheel under tox): the subprocesses get it first on PYTHONPATH
SRC = Path(wattwise.__file__).resolve().parents[1]
TIMEOUT_S = 120
START_UJ = (5_000_000, 70_000_000)  # node 0, node 1
UJ_PER_STEP = (1_000_000, 2_000_000)  # node 0: 1 J per training step, node 1: 2 J
STEPS_PER_EPOCH = 2  # per rank: 16 samples, DistributedSampler -> 8 per rank, batch 4
EPOCHS = 2
SAMPLES_PER_EPOCH = 16  # both ranks together

# launcher / scheduler variables that would make Lightning pick another cluster environment
_SCRUB_PREFIXES = ("SLURM_", "TORCHELASTIC_", "OMPI_", "PMI_", "LSB_", "KUBERNETES_", "JSM_")
_SCRUB = {"RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "NODE_RANK", "LOCAL_RANK",
          "MASTER_ADDR", "MASTER_PORT"}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_zone(root: Path, name: str, energy_uj: int) -> Path:
    zone = root / "intel-rapl:0"
    zone.mkdir(parents=True)
    (zone / "name").write_text(name + "\n")
    (zone / "energy_uj").write_text(f"{energy_uj:020d}\n")  # fixed width, as the script writes
    (zone / "max_energy_range_uj").write_text("262143328850\n")
    return zone


def _run_all(cmds: list[tuple[list[str], dict[str, str], Path]], timeout_s: float) -> list[str]:
    """Start every command, wait for all; the first failure or the timeout kills the others.

    Returns each process's output (stdout and stderr together); fails the test on a non-zero
    exit or a hang, with every process's output tail in the message.
    """
    procs = []
    logs = []
    for argv, env, log in cmds:
        f = open(log, "w+")  # noqa: SIM115 - closed below
        logs.append(f)
        procs.append(subprocess.Popen(argv, env=env, stdout=f, stderr=subprocess.STDOUT,
                                      cwd=log.parent))
    deadline = time.monotonic() + timeout_s
    failed = None
    try:
        while any(p.poll() is None for p in procs):
            bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if bad:
                failed = f"process {bad[0]} exited with {procs[bad[0]].returncode}"
                break
            if time.monotonic() > deadline:
                failed = f"timed out after {timeout_s} s"
                break
            time.sleep(0.2)
        else:
            bad = [i for i, p in enumerate(procs) if p.returncode != 0]
            if bad:
                failed = f"process {bad[0]} exited with {procs[bad[0]].returncode}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait(timeout=30)
        outputs = []
        for f in logs:
            f.seek(0)
            outputs.append(f.read())
            f.close()
    if failed:
        tails = "\n".join(f"--- process {i} ---\n{out[-4000:]}" for i, out in enumerate(outputs))
        pytest.fail(f"{failed}\n{tails}")
    return outputs


def test_two_nodes_each_counted_once_and_summed(tmp_path: Path) -> None:
    """num_nodes=2, devices=1: node 0's counter moves 1 J per step, node 1's 2 J per step;
    energy/train_joules on both ranks is the sum of both nodes' train-window movement."""
    zones = [_write_zone(tmp_path / f"node{n}" / "powercap", "package-0", START_UJ[n])
             for n in (0, 1)]
    base = {k: v for k, v in os.environ.items()
            if k not in _SCRUB and not k.startswith(_SCRUB_PREFIXES)}
    base["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    base.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), LOCAL_RANK="0",
                OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmds = []
    for node in (0, 1):
        env = dict(base, NODE_RANK=str(node))
        argv = [sys.executable, str(SCRIPT), str(tmp_path), str(node), str(UJ_PER_STEP[node])]
        cmds.append((argv, env, tmp_path / f"node{node}.log"))
    _run_all(cmds, TIMEOUT_S)

    out = [json.loads((tmp_path / f"metrics.node{n}.json").read_text()) for n in (0, 1)]
    # the machinery: two nodes of one DDP run, each moving its own counter in every step
    for n in (0, 1):
        assert (out[n]["global_rank"], out[n]["local_rank"], out[n]["node_rank"]) == (n, 0, n)
        assert out[n]["world_size"] == 2
        assert len(out[n]["steps"]) == EPOCHS * STEPS_PER_EPOCH
        moved_uj = out[n]["counter_uj"] - START_UJ[n]
        assert moved_uj == EPOCHS * STEPS_PER_EPOCH * UJ_PER_STEP[n]
        assert int(zones[n].joinpath("energy_uj").read_text()) == out[n]["counter_uj"]
    assert out[0]["weights"] == pytest.approx(out[1]["weights"])  # gradients were all-reduced

    # per epoch: node 0 moved 2 x 1 J, node 1 moved 2 x 2 J -> 6 J over 16 samples
    epoch_j = STEPS_PER_EPOCH * (UJ_PER_STEP[0] + UJ_PER_STEP[1]) / 1e6
    for n in (0, 1):  # logged once, the same on every rank
        m = out[n]["metrics"]
        assert m["energy/train_joules"] == pytest.approx(epoch_j, abs=1e-6), (n, m)
        assert m["energy/train_joules/cpu_package-0"] == pytest.approx(epoch_j, abs=1e-6), (n, m)
        assert m["energy/train_joules_per_sample"] == pytest.approx(
            epoch_j / SAMPLES_PER_EPOCH, abs=1e-6), (n, m)
        # validation leaves the counters still (a window under RAPL's 1 ms update period is
        # unknown and not logged at all, so the key may be absent)
        assert m.get("energy/val_joules", 0.0) == pytest.approx(0.0, abs=1e-6), (n, m)
    assert out[0]["metrics"] == out[1]["metrics"]

    # each node's local rank 0 reads its own node's counter
    for n, name in ((0, "run.json"), (1, "run.rank1.json")):
        summary = json.loads((tmp_path / name).read_text())
        assert [m["name"] for m in summary["meters"]] == ["rapl"], summary["meters"]
        assert summary["meters"][0].get("root", str(zones[n].parent)) == str(zones[n].parent)
