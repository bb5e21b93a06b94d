"""Keras under ``tf.distribute.MultiWorkerMirroredStrategy`` for real: two workers, one node.

The test is the cluster: it starts ``_multiworker_script.py`` twice, with a ``TF_CONFIG`` naming
both workers (``localhost`` and two free ports) and task index 0 / 1; the workers train one model
together (gradients all-reduced over gRPC). They share one fake powercap tree, as two processes on
one machine share its RAPL counters; only worker 0 moves it, by a known amount per training step.
Node-wide joules must be counted once: by worker 0 (global and local rank 0), not by worker 1
(global rank 1; no ``LOCAL_RANK`` is set, so ``TF_CONFIG``'s task index is its local rank too).

Both ways of asking for RAPL are covered: an explicit ``RaplMeter(root=...)`` instance, and the
name ``"rapl"`` with ``WATTWISE_RAPL_ROOT`` pointing meters opened by name at the tree.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import wattwise

pytest.importorskip("tensorflow")
if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    pytest.skip("MultiWorkerMirroredStrategy needs the tensorflow Keras backend",
                allow_module_level=True)

pytestmark = pytest.mark.keras

SCRIPT = Path(__file__).with_name("_multiworker_script.py")
# the folder the wattwise under test was imported from (the working tree's src/ under
# PYTHONPATH=src, the installed wheel under tox): the subprocesses get it first on PYTHONPATH
SRC = Path(wattwise.__file__).resolve().parents[1]
TIMEOUT_S = 180
START_UJ = 5_000_000
UJ_PER_STEP = 1_000_000  # worker 0 moves the node counter 1 J per training step
STEPS_PER_EPOCH = 2  # 16 samples, global batch 8 (4 per worker)
EPOCHS = 2
DOMAIN = "cpu:package-0"

# variables that set a rank, or a meter root, from outside; the test sets what it needs
_SCRUB = {"RANK", "LOCAL_RANK", "WORLD_SIZE", "TF_CONFIG", "WATTWISE_RAPL_ROOT",
          "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_PROCID", "SLURM_LOCALID",
          "http_proxy", "https_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY", "GRPC_PROXY"}


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
    exit or a hang, with every process's output tail in the message. (A worker that dies leaves
    the other blocked in a collective: it is killed at once rather than left to the timeout.)
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


def _train_joules(summary: dict[str, Any]) -> tuple[float | None, float | None]:
    """(joules, joules of the node's package domain) of the run's train phase."""
    train = summary["totals"]["phases"].get("train") or {}
    return train.get("joules"), (train.get("joules_by_domain") or {}).get(DOMAIN)


@pytest.mark.parametrize("meters", ["instance", "name"])
def test_node_counter_counted_once_across_workers(tmp_path: Path, meters: str) -> None:
    """Two MultiWorkerMirroredStrategy workers share one node's RAPL counter: worker 0 counts
    its movement once (not doubled), worker 1 does not read it at all."""
    tree = _write_zone(tmp_path / "powercap", "package-0", START_UJ).parent
    counter = tree / "intel-rapl:0" / "energy_uj"
    base = {k: v for k, v in os.environ.items() if k not in _SCRUB}
    base["PYTHONPATH"] = os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    base.update(KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1",
                no_proxy="localhost,127.0.0.1", NO_PROXY="localhost,127.0.0.1")
    if meters == "name":
        base["WATTWISE_RAPL_ROOT"] = str(tree)  # meters opened by name read the fake tree
    workers = [f"localhost:{_free_port()}", f"localhost:{_free_port()}"]
    cmds = []
    for index in (0, 1):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        env = dict(base, TF_CONFIG=json.dumps(tf_config))
        argv = [sys.executable, str(SCRIPT), str(tmp_path), meters, str(UJ_PER_STEP)]
        cmds.append((argv, env, tmp_path / f"worker{index}.log"))
    _run_all(cmds, TIMEOUT_S)

    out = [json.loads((tmp_path / f"out.worker{i}.json").read_text()) for i in (0, 1)]
    # the machinery: one synchronous run of two workers, worker 0 moving the counter per step
    assert [o["task"] for o in out] == [0, 1]
    for o in out:
        assert o["replicas"] == 2
        assert len(o["steps"]) == o["iterations"] == EPOCHS * STEPS_PER_EPOCH
    assert out[0]["weights"] == pytest.approx(out[1]["weights"])  # gradients were all-reduced
    assert out[0]["history"]["loss"] == pytest.approx(out[1]["history"]["loss"])
    moved_j = (int(counter.read_text()) - START_UJ) / 1e6
    assert moved_j == EPOCHS * STEPS_PER_EPOCH * UJ_PER_STEP / 1e6
    epoch_j = STEPS_PER_EPOCH * UJ_PER_STEP / 1e6

    # worker 0 (global rank 0, local rank 0): the node counter, once
    s0 = json.loads((tmp_path / "run.json").read_text())
    assert [m["name"] for m in s0["meters"]] == ["rapl"], s0["meters"]
    assert s0["meters"][0].get("root", str(tree)) == str(tree)
    joules, package_j = _train_joules(s0)
    assert joules == pytest.approx(moved_j, abs=1e-6)  # not doubled
    assert package_j == pytest.approx(moved_j, abs=1e-6)
    assert [e["phases"]["train"]["joules"] for e in s0["epochs"]] == pytest.approx(
        [epoch_j] * EPOCHS, abs=1e-6)
    assert out[0]["history"]["energy_joules"] == pytest.approx([epoch_j] * EPOCHS, abs=1e-6)

    # worker 1 (global rank 1, local rank 1 on the same node): does not read the node counter
    s1 = json.loads((tmp_path / "run.rank1.json").read_text())
    node_meters = [m for m in s1["meters"] if m["name"] == "rapl" or DOMAIN in m.get("domains", [])]
    assert node_meters == [], f"worker 1 read the node counter too: {node_meters}"
    assert _train_joules(s1)[1] is None
    assert "energy_joules_cpu_package_0" not in out[1]["history"], out[1]["history"]
