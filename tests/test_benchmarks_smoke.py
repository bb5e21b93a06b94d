"""benchmarks/peers.py and benchmarks/scale.py run end to end in a tiny configuration.

No timing is asserted (timings belong to the benchmarks): only that the scripts run, measure
what they say (the counter row really read the fake RAPL tree), aggregate correctly, and skip a
row whose packages do not import, saying why.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"wattwise_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _run(epochs: list[float], fit_s: float, start_s: float = 0.1) -> dict[str, Any]:
    return {"fit_s": fit_s, "start_s": start_s, "epoch_s": epochs}


def test_aggregate_slowdown_and_steady_epoch() -> None:
    peers = _load("peers")
    none = peers.Job("lightning", "none", sys.executable,
                     runs=[_run([0.5, 0.2, 0.2], 1.0), _run([0.6, 0.2, 0.4], 1.2),
                           _run([0.5, 0.2, 0.2], 0.9)])
    mon = peers.Job("lightning", "wattwise-counters", sys.executable,
                    runs=[_run([0.5, 0.25, 0.25], 1.1), _run([0.5, 0.25, 0.25], 1.05)])
    hand = peers.Job("lightning", "codecarbon-hand", sys.executable,
                     runs=[_run([0.5, 0.3, 0.3], 2.0)])
    gone = peers.Job("lightning", "carbontracker", sys.executable,
                     skipped="cannot import carbontracker (carbontracker: ModuleNotFoundError)")
    rows = {r["config"]: r for r in peers.aggregate([none, mon, hand, gone])}
    assert rows["none"]["median_fit_s"] == pytest.approx(1.0)
    assert rows["none"]["min_fit_s"] == pytest.approx(0.9)
    assert rows["wattwise-counters"]["slowdown"] == pytest.approx(0.075)
    # steady epoch: epochs 2..n of each fit, their median, then the median over fits
    assert rows["none"]["steady_epoch_s"] == pytest.approx(0.2)
    assert rows["wattwise-counters"]["steady_epoch_cost_s"] == pytest.approx(0.05)
    assert rows["carbontracker"]["runs"] == 0 and rows["carbontracker"]["slowdown"] is None
    table = peers.render(list(rows.values()))
    assert "| +7.5 % |" in table and "+50.0 ms (+25.0 %)" in table
    assert "skipped: cannot import carbontracker" in table
    lines = peers.verdicts(list(rows.values()))
    assert lines == ["lightning wattwise-counters: fit slowdown +7.5 % (target <= 3 %: NOT met); "
                     "codecarbon by hand: +100.0 %"]


def test_paired_slowdown_compares_fits_of_the_same_round() -> None:
    """A slow spell that hits one round's fits together cancels in the paired column."""
    peers = _load("peers")
    none = peers.Job("lightning", "none", sys.executable, runs=[
        {**_run([0.3], 1.0), "round": 0}, {**_run([0.6], 2.0), "round": 1},
        {**_run([0.3], 1.0), "round": 2}])
    mon = peers.Job("lightning", "wattwise-counters", sys.executable, runs=[
        {**_run([0.3], 1.02), "round": 0}, {**_run([0.6], 2.04), "round": 1},
        {**_run([0.3], 1.5), "round": 3}])  # round 3 has no baseline fit: left out
    rows = {r["config"]: r for r in peers.aggregate([none, mon])}
    assert rows["wattwise-counters"]["slowdown"] == pytest.approx(0.5)  # the spell in one
    assert rows["wattwise-counters"]["paired_slowdown"] == pytest.approx(0.02)
    assert rows["none"]["paired_slowdown"] == pytest.approx(0.0)
    assert "| +50.0 % | +2.0 % |" in peers.render(list(rows.values()))
    assert peers.verdicts(list(rows.values())) == [
        "lightning wattwise-counters: fit slowdown +50.0 % (target <= 3 %: NOT met); "
        "paired by round: +2.0 %"]


def test_missing_packages_skip_the_row(monkeypatch: pytest.MonkeyPatch) -> None:
    child = _load("_peers_child")
    monkeypatch.setitem(child.NEEDS, "ghost", ("wattwise_no_such_module|also_not_there",))
    why = child.missing({"framework": "ghost", "config": "none"})
    assert why is not None and why.startswith("cannot import wattwise_no_such_module or "
                                              "also_not_there (")
    peers = _load("peers")
    job = peers.Job("keras", "none", str(REPO / "no-such-python"))
    peers.run_jobs([job], rounds=1, size={"epochs": 1, "batches": 1, "batch_size": 2})
    assert job.runs == [] and job.skipped is not None and "no-such-python" in job.skipped


def test_peers_script_tiny_fit(tmp_path: Path) -> None:
    out = tmp_path / "peers.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH / "peers.py"), "--framework", "lightning", "--quick",
         "--epochs", "2", "--rounds", "1", "--no-warmup", "--configs", "none,wattwise-counters",
         "--json", str(out)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| framework | configuration |" in proc.stdout
    doc = json.loads(out.read_text())
    rows = {r["config"]: r for r in doc["rows"]}
    assert set(rows) == {"none", "wattwise-counters"}
    if rows["none"]["runs"] == 0:  # an environment without torch/Lightning: skipped, saying why
        for r in rows.values():
            assert r["skipped"].startswith("cannot import"), r
        return
    for r in rows.values():
        assert r["runs"] == 1 and r["skipped"] is None, r
        run = doc["runs"][f"lightning/{r['config']}"][0]
        assert len(run["epoch_s"]) == 2 and 0 < run["start_s"] < run["fit_s"]
    # EnergyMonitor() found the fake RAPL tree (WATTWISE_RAPL_ROOT) and measured with it
    assert rows["wattwise-counters"]["meters"] == "rapl(measured)"


def test_scale_tracker_epochs() -> None:
    pytest.importorskip("wattwise")
    scale = _load("scale")
    rows = scale.epochs_part(40, 0.0, buckets=4)
    assert [r["epochs"] for r in rows] == [10, 20, 30, 40, "finish()"]
    final = rows[-1]
    assert final["file_bytes"] > 0  # finish() wrote the summary of 40 epochs
    if final["written_bytes"] is not None:  # /proc/self/io on Linux
        assert final["written_bytes"] >= final["file_bytes"] and final["write_calls"] >= 1
    assert "| finish() |" in scale.render_epochs(rows)
