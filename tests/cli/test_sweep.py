"""``wattwise sweep`` with tiny sizes, 1 epoch, measuring from a fake RAPL tree; its reading
(repeats, knees, boundaries) on made-up points."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from wattwise.cli.main import main

FAKE_WATTS = 40.0  # the rapl_root fixture's (conftest.py) counter speed

def test_sweep_two_sizes_measured(rapl_root: Path, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lightning")
    pytest.importorskip("sklearn")
    from wattwise.model.shapes import network_widths, ntp

    out = tmp_path / "sweep"
    rc = main(["sweep", "--sizes", "300", "3000", "--epochs", "1", "--batch-size", "128",
               "--repeats", "3", "--out", str(out), "--rapl-root", str(rapl_root)])
    assert rc == 0
    index = json.loads((out / "sweep.json").read_text())
    assert index["energy"] == "measured" and index["estimated"] is False
    assert index["repeats"] == 3 and index["warmup_runs"] == 1
    assert (out / "warmup.json").is_file()  # the warm-up ran, and is no point's run
    assert [p["target_size"] for p in index["points"]] == [300, 3000]
    started = []
    for p in index["points"]:
        widths = network_widths("rectangle", 3, p["target_size"], 64, 10)
        assert p["widths"] == widths and p["ntp"] == ntp(64, widths)
        assert [r["repeat"] for r in p["runs"]] == [1, 2, 3]
        assert "warmup.json" not in [r["summary"] for r in p["runs"]]
        for r in p["runs"]:
            summary = json.loads((out / r["summary"]).read_text())
            assert summary["status"] == "completed" and summary["estimated"] is False
            started.append((r["sequence"], p["ntp"]))
        jps = [r["joules_per_sample"] for r in p["runs"]]
        assert p["joules_per_sample"] == sorted(jps)[1]  # the median of 3
        assert p["joules_per_sample_min"] == min(jps) and p["joules_per_sample_max"] == max(jps)
        assert p["samples"] == 1438
        # the fake counter moves at FAKE_WATTS: J/sample = W x s/sample
        assert p["joules_per_sample"] == pytest.approx(FAKE_WATTS * p["seconds_per_sample"],
                                                       rel=0.25)
    # interleaved: no point's repeats run back to back
    assert sorted(q for q, _ in started) == [1, 2, 3, 4, 5, 6]  # 0 was the warm-up
    order = [n for _, n in sorted(started)]
    assert all(a != b for a, b in zip(order, order[1:])), order
    png = out / "sweep.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    text = capsys.readouterr().out
    assert "mJ/sample" in text and "ESTIMATES" not in text and "spread" in text
    assert "measured knees against the model's cache boundaries" in text
    assert f"wattwise fit {out}/size-*.json" in text
    # `wattwise fit` reads every repeat's summary through the index
    rc = main(["fit", *sorted(str(p) for p in out.glob("size-*.json")), "--folds", "0"])
    assert rc == 0 and "fitted 6 CPU run(s)" in capsys.readouterr().out


def test_sweep_batch_sizes(rapl_root: Path, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("lightning")
    pytest.importorskip("sklearn")
    out = tmp_path / "sweep"
    rc = main(["sweep", "--batch-sizes", "128", "32", "--sizes", "300", "--repeats", "1",
               "--epochs", "1", "--out", str(out), "--rapl-root", str(rapl_root)])
    assert rc == 0
    index = json.loads((out / "sweep.json").read_text())
    assert index["swept"] == "batch_size"
    assert [p["batch_size"] for p in index["points"]] == [32, 128]
    assert len({p["ntp"] for p in index["points"]}) == 1
    for p in index["points"]:
        summary = json.loads((out / p["runs"][0]["summary"]).read_text())
        assert summary["totals"]["phases"]["train"]["batches"] == -(-1438 // p["batch_size"])
    text = capsys.readouterr().out
    assert "predicted batch size" in text


def test_find_knees_only_above_the_spread() -> None:
    from wattwise.cli.sweep import find_knees

    xs = [1e3, 2e3, 4e3, 8e3, 16e3, 32e3]
    ys = [1.0, 1.0, 1.0, 2.0, 4.0, 8.0]  # flat, then linear in x from 4e3: one knee
    tight = find_knees(xs, ys, [y * 0.98 for y in ys], [y * 1.02 for y in ys])
    assert [k["x"] for k in tight] == [4e3]
    assert tight[0]["slope_change"] == pytest.approx(1.0)
    # the same medians with a +-40 % spread: the knee does not rise above it
    assert find_knees(xs, ys, [y * 0.6 for y in ys], [y * 1.4 for y in ys]) == []
    assert find_knees(xs[:2], ys[:2], ys[:2], ys[:2]) == []


def _index(swept: str = "ntp") -> dict[str, object]:
    from wattwise.model.shapes import network_widths, ntp

    points = []
    for size in (300, 3000, 30000, 300000):
        w = network_widths("rectangle", 3, size, 64, 10)
        n = ntp(64, w)
        y = 1e-3 * (1 + n / 1e4)
        points.append({"ntp": n, "widths": w, "batch_size": 64, "joules_per_sample": y,
                       "joules_per_sample_min": y * 0.99, "joules_per_sample_max": y * 1.01,
                       "runs": [{}, {}, {}]})
    return {"n_in": 64, "n_out": 10, "n_train": 1438, "shape": "rectangle", "depth": 3,
            "batch_size": 64, "swept": swept, "estimated": False, "repeats": 3,
            "points": points}


def test_knee_table_against_the_models_boundaries() -> None:
    from wattwise.cli.sweep import format_knees, knee_rows, predicted_boundaries
    from wattwise.hardware import detect_hierarchy
    from wattwise.model.advise import footprints
    from wattwise.model.working_sets import mlp_working_sets

    h = detect_hierarchy("butter-e-cpu")
    index = _index()
    bounds = predicted_boundaries(index, h)
    assert "L1" in bounds
    # at the predicted NTP the backward set has just filled L1
    from wattwise.model.shapes import network_widths

    w = network_widths("rectangle", 3, int(bounds["L1"]), 64, 10)
    ratio = {lr.level: lr.ratio for lr in footprints(mlp_working_sets(w, 64, 64, n_obs=1438), h)}
    assert 1.0 <= ratio["L1"] < 1.2
    index["knees"] = knee_rows(index, h)
    assert {r["level"] for r in index["knees"]} == set(bounds)
    table = format_knees(index, h)
    assert "predicted NTP" in table and "L1" in table
    for r in index["knees"]:
        if r["knee"] is not None:
            assert r["ratio"] == pytest.approx(r["knee"] / r["predicted"])


def test_warnings_once(capsys: pytest.CaptureFixture[str]) -> None:
    from wattwise.cli.sweep import warnings_once

    with warnings_once("sweep"):
        for _ in range(3):
            warnings.warn("meter X unavailable", UserWarning, stacklevel=1)
            warnings.resetwarnings()  # what a framework may do between runs
        warnings.warn("another", UserWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert err.count("wattwise sweep: warning: meter X unavailable") == 1
    assert "wattwise sweep: warning: another" in err


@pytest.mark.parametrize("argv, needle", [
    (["sweep", "--sizes", "0"], "--sizes: 0"),
    (["sweep", "--min-size", "100", "--max-size", "10"], "--max-size 10"),
    (["sweep", "--points", "0"], "--points 0"),
    (["sweep", "--shape", "pyramid"], "--shape 'pyramid'"),
    (["sweep", "--framework", "keras"], "lightning only"),
    (["sweep", "--repeats", "0"], "--repeats 0"),
    (["sweep", "--batch-sizes", "0", "64"], "--batch-sizes: 0"),
    (["sweep", "--batch-sizes", "32", "64", "--sizes", "100", "200"], "give one size"),
])
def test_bad_input_one_line_error(tmp_path: Path, argv: list[str], needle: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "wattwise", *argv], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattwise sweep: error:"), proc.stderr
    assert needle in lines[0]


def test_log_spaced_sizes() -> None:
    import argparse

    from wattwise.cli.sweep import target_sizes

    ns = argparse.Namespace(sizes=None, min_size=1000, max_size=100000, points=3)
    assert target_sizes(ns) == [1000, 10000, 100000]


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out
