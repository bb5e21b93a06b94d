"""Calibrations: the fit, the stored file and its provenance, how the advice labels its
coefficients, ``wattwise calibrate`` end to end (tiny sweep, fake RAPL tree) and
``wattwise fit --update-calibration``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from wattwise.calibration import (
    Calibration,
    calibration_path,
    choose_coefficients,
    describe_coefficients,
    fit_calibration,
    hardware_identity,
    load_calibration,
    make_calibration,
    save_calibration,
)
from wattwise.errors import WattwiseWarning
from wattwise.hardware import detect_hierarchy
from wattwise.model.coefficients import preset
from wattwise.model.energy import pass_features, predict
from wattwise.model.working_sets import mlp_working_sets

H = detect_hierarchy("butter-e-cpu")


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


def run_cli(argv: list[str]) -> Result:
    """``main(argv)`` in this process, stdout and stderr captured (no ``from conftest import``:
    with tests/model collected too, ``conftest`` names another module)."""
    from wattwise.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Result(code, out.getvalue(), err.getvalue())


def _rows(truth: list[float], sizes: tuple[int, ...] = (16, 64, 256, 1024, 2048)) -> tuple[
        list[tuple[float, ...]], list[float]]:
    rows, joules = [], []
    for w in sizes:
        step = pass_features(mlp_working_sets([w, w, 10], 64, 64, n_obs=1438), H).train_step
        row = tuple(23 * x for x in step)
        rows.append(row)
        joules.append(predict(row, truth))
    return rows, joules


def test_fit_recovers_a_scaled_preset() -> None:
    base = preset("cpu")
    truth = [base.values[0]] + [0.3 * v for v in base.values[1:]]
    rows, joules = _rows(truth)
    fit = fit_calibration(rows, joules, base)
    assert fit.fit_error < 1e-6 and fit.cv_error is not None and fit.cv_error < 1e-6
    assert fit.coefficients.k_p == pytest.approx(0.3 * base.k_p, rel=1e-6)
    assert fit.coefficients.cv_error == fit.cv_error


def test_fit_separates_compute_and_memory() -> None:
    base = preset("cpu")
    truth = list(base.values)
    for j in (1, 2, 3):
        truth[j] *= 0.2
    for j in range(4, 12):
        truth[j] *= 5.0
    rows, joules = _rows(truth)
    fit = fit_calibration(rows, joules, base)
    assert fit.method == "compute+memory"
    assert fit.scales["compute"] == pytest.approx(0.2, rel=1e-3)
    assert fit.scales["memory"] == pytest.approx(5.0, rel=1e-3)
    # one scale cannot fit these points: its error is what the chosen model beat
    one = fit_calibration(rows[:3], joules[:3], base)
    assert one.method == "scale" and one.fit_error > 0.01


def test_stored_calibration_is_used_and_labelled(tmp_path: Path) -> None:
    rows, joules = _rows([0.0] + [0.5 * v for v in preset("cpu").values[1:]])
    cal, fit = make_calibration(rows, joules, H, meters=["rapl"], energy="measured")
    path = save_calibration(cal, H)
    assert path.parent == Path(os.environ["WATTWISE_CONFIG_DIR"])
    assert path == calibration_path(H)
    data = json.loads(path.read_text())
    prov = data["provenance"]
    assert prov["format"] == "wattwise-calibration/1" and prov["meters"] == ["rapl"]
    assert prov["energy"] == "measured" and prov["n_points"] == 5
    assert prov["hardware"] == hardware_identity(H) and len(prov["points"]) == 5
    assert data["cv_error"] == pytest.approx(fit.cv_error)
    assert load_calibration(H) == cal
    chosen = choose_coefficients(H)
    assert chosen == cal.coefficients
    info = describe_coefficients(chosen, H)
    assert info["calibrated"] is True
    assert info["label"].startswith("calibrated on this machine (") and "rapl measured" in info["label"]
    # the preset is labelled uncalibrated, with how to calibrate
    info = describe_coefficients(preset("cpu"), H)
    assert info["calibrated"] is False and "uncalibrated" in info["label"]
    assert "typical error ±30 %" in info["label"] and "wattwise calibrate" in info["label"]
    # another machine (other cache sizes) does not see this file
    other = replace(H, levels=(replace(H.levels[0], bytes_per_unit=H.levels[0].bytes_per_unit * 2),
                               *H.levels[1:]))
    assert calibration_path(other) != path
    assert load_calibration(other) is None and choose_coefficients(other) == preset("cpu")


def test_advice_record_carries_the_label() -> None:
    from wattwise.sizing import advice_json, check_working_sets

    ws = mlp_working_sets([128, 128, 10], 64, 64, n_obs=1438)
    advice = check_working_sets(ws, n_samples=1438, hardware=H, coefficients=None)
    d = advice_json(advice)
    assert d["coefficients"]["calibrated"] is False
    assert d["coefficients"]["label"].startswith("uncalibrated: coefficients of")
    assert d["text"].endswith(d["coefficients"]["label"])
    rows, joules = _rows([0.0] + [0.5 * v for v in preset("cpu").values[1:]])
    save_calibration(make_calibration(rows, joules, H, meters=["rapl"], energy="measured")[0], H)
    advice = check_working_sets(ws, n_samples=1438, hardware=H, coefficients=None)
    d = advice_json(advice)
    assert d["coefficients"]["calibrated"] is True
    assert advice.coefficients.k_o == pytest.approx(0.5 * preset("cpu").k_o, rel=1e-6)
    assert d["estimated_joules_per_sample"] == pytest.approx(
        predict(advice.features.train_step, advice.coefficients) / 64)


@pytest.mark.parametrize("content", ["{not json", '{"format": "wattwise-coefficients/1"}',
                                     "[1, 2]"])
def test_corrupt_file_one_warning_and_the_preset(content: str) -> None:
    path = calibration_path(H)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content + (" " * len(str(path))))  # a distinct file text per case
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert choose_coefficients(H) == preset("cpu")
        assert choose_coefficients(H) == preset("cpu")
    msgs = [str(w.message) for w in caught if issubclass(w.category, WattwiseWarning)]
    assert len(msgs) <= 1 and all("ignoring the calibration file" in m for m in msgs)


def test_calibration_rejects_bad_energy_kind() -> None:
    from wattwise.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="energy='guess'"):
        Calibration(preset("cpu"), "2026-01-01T00:00:00Z", ("rapl",), "guess", {}, 1, "")


def test_calibrate_cli_end_to_end(rapl_root: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny calibration sweep (3 points, 1 repeat, 1 epoch) measured by a fake RAPL
    counter; the advice then says "calibrated on this machine"."""
    pytest.importorskip("lightning")
    pytest.importorskip("sklearn")
    from wattwise.cli import calibrate

    monkeypatch.setitem(calibrate.QUICK, "sizes", (300, 3000))
    monkeypatch.setitem(calibrate.QUICK, "batch_sizes", (128,))
    monkeypatch.setitem(calibrate.QUICK, "repeats", 1)
    monkeypatch.setitem(calibrate.QUICK, "epochs", 1)
    out = tmp_path / "cal"
    r = run_cli(["calibrate", "--quick", "--rapl-root", str(rapl_root), "--out", str(out)])
    assert r.code == 0, r.err[-2000:]
    assert "3 points x 1 repeats + 1 warm-up" in r.out
    h = detect_hierarchy("auto")
    cal = load_calibration(h)
    assert cal is not None and cal.energy == "measured" and cal.meters == ("rapl",)
    assert cal.n_points == 3 and cal.coefficients.cv_error is not None
    assert f"stored: {calibration_path(h)}" in r.out
    assert "coefficients: calibrated on this machine" in r.out
    index = json.loads((out / "sweep.json").read_text())
    assert index["calibration"]["method"] == "scale" and len(index["points"]) == 3
    adv = run_cli(["advise", "--widths", "64,128,128,10", "--batch-size", "64"])
    assert adv.code == 0, adv.err
    assert "coefficients: calibrated on this machine" in adv.out
    shown = run_cli(["calibrate", "--show"])
    assert shown.code == 0 and shown.out.startswith("calibrated on this machine")


def test_calibrate_show_without_calibration() -> None:
    r = run_cli(["calibrate", "--show"])
    assert r.code == 1 and "no calibration for this machine" in r.out


def test_fit_update_calibration(inputs: object) -> None:
    """`wattwise fit RUN --update-calibration` refits the stored calibration with the run."""
    h = detect_hierarchy("auto")
    if h.kind != "cpu":
        pytest.skip("the fixture's run has CPU features")
    advised = inputs.advised  # type: ignore[attr-defined]
    r = run_cli(["fit", str(advised), "--update-calibration"])
    assert r.code == 0, r.err
    first = load_calibration(h)
    assert first is not None and first.n_points == 1 and first.meters == ("runs",)
    r = run_cli(["fit", str(advised), "--update-calibration"])
    assert r.code == 0 and "1 stored point(s) and 1 run(s)" in r.out
    second = load_calibration(h)
    assert second is not None and second.n_points == 2


def test_callbacks_sizing_warning_says_uncalibrated(tmp_path: Path) -> None:
    """What both callbacks do at training start (record_advice): the summary's advice and the
    warning carry the coefficients' label."""
    from wattwise.errors import SizingWarning
    from wattwise.sizing import check_working_sets, record_advice
    from wattwise.testing import FakeMeter
    from wattwise.tracker import EnergyTracker

    ws = mlp_working_sets([512, 512, 10], 64, 64, n_obs=1438)
    advice = check_working_sets(ws, n_samples=1438, hardware=H, coefficients=None)
    assert advice.far
    tracker = EnergyTracker([FakeMeter()], summary_path=tmp_path / "run.json", min_window_s=0.0)
    tracker.start()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record_advice(tracker, advice)
    tracker.finish("completed")
    texts = [str(w.message) for w in caught if issubclass(w.category, SizingWarning)]
    assert len(texts) == 1 and "coefficients: uncalibrated: coefficients of" in texts[0]
    stored = json.loads((tmp_path / "run.json").read_text())["advice"]
    assert stored["coefficients"]["calibrated"] is False
    assert stored["coefficients"]["label"] in texts[0]


@pytest.mark.parametrize("xdg", [None, "", "  ", "/tmp/xdg-config"])
def test_config_dir_is_platformdirs_user_config_dir(monkeypatch: pytest.MonkeyPatch,
                                                    xdg: str | None) -> None:
    """Without WATTWISE_CONFIG_DIR the folder is platformdirs' (on Linux computed without
    importing it, which the sizing check would pay for)."""
    import platformdirs

    from wattwise.calibration import CONFIG_DIR_ENV, config_dir

    monkeypatch.delenv(CONFIG_DIR_ENV, raising=False)
    if xdg is None:
        monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CONFIG_HOME", xdg)
    assert config_dir() == Path(platformdirs.user_config_dir("wattwise", appauthor=False))
