"""``wattwise fit``: from real run summaries (EnergyTracker + FakeMeter) and BUTTER-style CSV."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from wattwise.cli.main import main
from wattwise.model.coefficients import preset
from wattwise.model.energy import predict
from wattwise.sizing import check_torch_model, load_coefficients
from wattwise.testing import FakeMeter
from wattwise.tracker import EnergyTracker

SHARED = Path(os.environ.get("WATTWISE_SHARED") or Path(__file__).resolve().parents[2] / ".." / "shared")

# the "machine" these fake runs were measured on: the paper's GPU coefficients, 1.5x
TRUTH = preset("gpu").with_values([0.0] + [1.5 * v for v in preset("gpu").values[1:]])


def _write_run(path: Path, hidden: int, epochs: int = 2, train_batches: int = 3,
               val_batches: int = 1, estimated: bool = False) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(16, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, hidden), torch.nn.ReLU(),
                              torch.nn.Linear(hidden, 4))
    advice = check_torch_model(net, torch.randn(8, 16), batch_size=32, n_samples=96,
                               hardware="butter-e-gpu")
    e_train = predict(advice.features.train_step, TRUTH)
    e_val = predict(advice.features.test_forward, TRUTH)
    meter = FakeMeter(("gpu:0",), estimated=estimated)
    tr = EnergyTracker([meter], summary_path=path, min_window_s=0.0)
    tr.start()
    tr.set_advice(advice.to_json())
    for epoch in range(epochs):
        tr.start_window("train", epoch)
        for _ in range(train_batches):
            tr.add_batch(32)
            meter.advance({"gpu:0": e_train})
        tr.end_window()
        tr.start_window("validate", epoch)
        for _ in range(val_batches):
            tr.add_batch(32)
            meter.advance({"gpu:0": e_val})
        tr.end_window()
        tr.end_epoch()
    tr.finish("completed")


def test_fit_from_run_summaries_recovers_the_machine(tmp_path, capsys):
    runs = []
    for i, hidden in enumerate((4, 16, 48, 128, 300, 700, 1200, 2000)):
        p = tmp_path / f"run{i}.json"
        _write_run(p, hidden, epochs=1 + i % 2)
        runs.append(str(p))
    out = tmp_path / "coefficients.json"
    rc = main(["fit", *runs, "--out", str(out), "--json"])
    assert rc == 0
    j = json.loads(capsys.readouterr().out)
    assert j["n_runs"] == 8
    assert j["mean_abs_error"] < 1e-3
    c = load_coefficients(out)
    assert c.hardware == "gpu" and c.n_runs == 8 and c.k_e == 0.0
    # the refit predicts the fake machine, where the paper's coefficients are 1.5x too low
    adv = json.loads(Path(runs[3]).read_text())["advice"]
    f, b, t = (adv["features"][k] for k in ("forward", "backward", "test_forward"))
    epoch = [3 * (x + y) + z for x, y, z in zip(f, b, t)]  # one epoch: 3 train + 1 val batch
    assert predict(epoch, c) == pytest.approx(predict(epoch, TRUTH), rel=1e-3)
    assert predict(epoch, c) / predict(epoch, preset("gpu")) > 1.4
    rc = main(["advise", "--widths", "16,64,4", "--hardware", "butter-e-gpu", "--coefficients",
               str(out)])
    assert rc == 0 and "per sample (estimate)" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::wattwise.errors.EstimateWarning")
def test_fit_skips_estimates_and_reports_one_line_errors(tmp_path, capsys):
    p = tmp_path / "est.json"
    _write_run(p, 8, estimated=True)
    rc = main(["fit", str(p)])
    err = capsys.readouterr().err
    assert rc == 2 and "skipped" in err and "estimates" in err
    assert err.strip().splitlines()[-1].startswith("wattwise fit: error: no usable runs")
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    for argv, needle in (([str(bad)], "not valid JSON"),
                         ([str(tmp_path / "missing.json")], "no such file"),
                         ([str(p), "--hardware", "tpu"], "--hardware 'tpu'"),
                         ([str(p), "--folds", "x"], "--folds 'x'")):
        rc = main(["fit", *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and needle in err, err


def test_fit_butter_csv(capsys):
    csv_path = SHARED / "data" / "butter_e" / "runs_sample.csv"
    if not csv_path.is_file():
        if os.environ.get("CI"):  # CI always has ../shared
            pytest.fail(f"shared BUTTER-E data not found at {csv_path}")
        pytest.skip("shared BUTTER-E data not found (set WATTWISE_SHARED)")
    rc = main(["fit", str(csv_path), "--hardware", "gpu"])
    out = capsys.readouterr().out
    assert rc == 0 and "fitted 102 GPU run(s)" in out
    cv = float(out.split("cross-validated mean |pred/meas - 1|: ")[1].split(" %")[0])
    assert cv <= 4.0
    rc = main(["fit", str(csv_path)])
    assert rc == 2 and "mix hardware kinds" in capsys.readouterr().err


def test_fit_sweep_folder_without_advice(tmp_path, capsys):
    """`wattwise sweep` writes summaries without advice plus a sweep.json index."""
    from wattwise.hardware import detect_hierarchy
    from wattwise.model.energy import pass_features
    from wattwise.model.working_sets import mlp_working_sets

    h = detect_hierarchy("butter-e-cpu")
    truth = preset("cpu").with_values([0.0] + list(preset("cpu").values[1:]))
    points = []
    for i, hidden in enumerate((8, 32, 64, 128, 256, 512, 1024, 1500, 2000, 3000, 4000, 6000)):
        name = f"size-{i}.json"
        ws = mlp_working_sets([hidden, 10], 64, 32, n_obs=320)
        pf = pass_features(ws, h)
        meter = FakeMeter(("cpu:package-0",))
        tr = EnergyTracker([meter], summary_path=tmp_path / name, min_window_s=0.0)
        tr.start()
        tr.start_window("train", 0)
        for _ in range(10):
            tr.add_batch(32)
            meter.advance({"cpu:package-0": predict(pf.train_step, truth)})
        tr.end_window()
        tr.end_epoch()
        tr.finish("completed")
        points.append({"summary": name, "widths": [hidden, 10], "ntp": ws.ntp})
    (tmp_path / "sweep.json").write_text(json.dumps(
        {"schema": "wattwise.sweep/1", "n_in": 64, "n_out": 10, "batch_size": 32,
         "points": points}))
    rc = main(["fit", *sorted(str(p) for p in tmp_path.glob("size-*.json")),
               "--hardware", "butter-e-cpu", "--json"])
    assert rc == 0
    j = json.loads(capsys.readouterr().out)
    assert j["n_runs"] == 12 and j["mean_abs_error"] < 0.02
    assert j["coefficients"]["hardware"] == "cpu"
