"""``wattwise report`` and ``wattwise.report`` against summaries written by a real EnergyTracker."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from wattwise import EnergyTracker
from wattwise.cli.main import main
from wattwise.console import UNKNOWN, format_run_table
from wattwise.report import (
    CSV_COLUMNS,
    format_report,
    load_summary,
    plot_runs,
    report_rows,
    rows_to_csv,
)
from wattwise.testing import FakeMeter

# (train joules, validate joules) the fake counter moves in each epoch
EPOCHS = [(30.0, 6.0), (24.0, 4.0)]
TRAIN_SAMPLES = 3 * 32 + 10  # three full batches and a partial one
VAL_SAMPLES = 40


def _tracked_run(path: Path, name: str, *, estimated: bool = False, scale: float = 1.0) -> Path:
    """Drive a real EnergyTracker with a FakeMeter whose counters move by EPOCHS x scale."""
    meter = FakeMeter(("cpu:package-0",), estimated=estimated,
                      name="codecarbon" if estimated else "fake")
    tracker = EnergyTracker([meter], summary_path=path, run_name=name)
    tracker.start()
    for epoch, (train_j, val_j) in enumerate(EPOCHS):
        tracker.start_window("train", epoch)
        for samples in (32, 32, 32, 10):
            tracker.add_batch(samples=samples)
        meter.advance(train_j * scale)
        tracker.end_window()
        tracker.start_window("validate", epoch)
        tracker.add_batch(samples=VAL_SAMPLES)
        meter.advance(val_j * scale)
        tracker.end_window()
        tracker.end_epoch()
    tracker.finish("completed")
    return path


@pytest.fixture
def run_a(tmp_path: Path) -> Path:
    return _tracked_run(tmp_path / "a" / "summary.json", "run-a")


@pytest.fixture
def run_b(tmp_path: Path) -> Path:
    return _tracked_run(tmp_path / "b" / "summary.json", "run-b", estimated=True, scale=2.0)


def test_rows_match_the_counter_movement(run_a: Path) -> None:
    rows = report_rows(load_summary(run_a))
    by_key = {(r.epoch, r.phase): r for r in rows}
    for epoch, (train_j, val_j) in enumerate(EPOCHS):
        tr = by_key[(epoch, "train")]
        assert tr.joules == pytest.approx(train_j)
        assert tr.samples == TRAIN_SAMPLES
        assert tr.joules_per_sample == pytest.approx(train_j / TRAIN_SAMPLES)
        assert tr.estimated is False and tr.source == "measured"
        va = by_key[(epoch, "validate")]
        assert va.joules == pytest.approx(val_j)
        assert va.joules_per_sample == pytest.approx(val_j / VAL_SAMPLES)
    total = by_key[(None, "train")]
    assert total.joules == pytest.approx(sum(t for t, _ in EPOCHS))
    assert total.joules_per_sample == pytest.approx(
        sum(t for t, _ in EPOCHS) / (TRAIN_SAMPLES * len(EPOCHS))
    )


def test_estimated_runs_are_labelled(run_b: Path) -> None:
    rows = report_rows(load_summary(run_b))
    assert rows and all(r.estimated for r in rows)
    text = format_report([load_summary(run_b)])
    assert "ESTIMATES" in text and "estimated" in text and "measured" not in text


def test_cli_one_run_prints_per_epoch_table(run_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_a)]) == 0
    out = capsys.readouterr().out
    assert "run-a" in out and "J/sample" in out
    # per-epoch train joules of the first epoch, as printed
    assert any(line.split()[:3] == ["0", "train", "30.00"] for line in out.splitlines()), out


def test_cli_side_by_side(run_a: Path, run_b: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_a), str(run_b)]) == 0
    out = capsys.readouterr().out
    assert "Runs side by side" in out
    side = out.split("Runs side by side", 1)[1]
    joules_line = next(l for l in side.splitlines() if l.split()[:2] == ["train", "joules"])
    assert joules_line.split()[2:] == ["54.00", "108.00"]  # console.format_number, like the run table
    source_line = next(l for l in side.splitlines() if l.split()[:2] == ["train", "source"])
    assert source_line.split()[2:] == ["measured", "estimated"]


def test_cli_csv_and_plot(run_a: Path, run_b: Path, tmp_path: Path) -> None:
    csv_path, png = tmp_path / "out.csv", tmp_path / "out.png"
    assert main(["report", str(run_a), str(run_b), "--csv", str(csv_path), "--plot", str(png)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert {r["run"] for r in rows} == {"run-a", "run-b"}
    first = next(r for r in rows if r["run"] == "run-b" and r["epoch"] == "1" and r["phase"] == "train")
    assert float(first["joules"]) == pytest.approx(48.0)
    assert first["source"] == "estimated"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_csv_to_stdout(run_a: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_a), "--csv", "-"]) == 0
    out = capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == len(report_rows(load_summary(run_a)))
    assert out == rows_to_csv(report_rows(load_summary(run_a)))


def test_unknown_joules_stay_unknown(tmp_path: Path) -> None:
    """A stalled counter gives no joules: shown as console.UNKNOWN and left empty in CSV, never 0."""
    meter = FakeMeter(("cpu:package-0",), update_period_s=10.0)
    tracker = EnergyTracker([meter], summary_path=tmp_path / "s.json", run_name="stalled")
    tracker.start()
    tracker.start_window("train", 0)
    tracker.add_batch(samples=8)
    meter.stall()
    rec = tracker.end_window()
    tracker.end_epoch()
    tracker.finish()
    rows = [r for r in report_rows(load_summary(tmp_path / "s.json")) if r.epoch == 0]
    assert rec.joules is None  # the tracker never reports a stalled window as 0 J
    assert rows[0].joules is None and rows[0].joules_per_sample is None
    assert ",train,," in rows_to_csv(rows)
    text = format_report([load_summary(tmp_path / "s.json")])
    line = next(l for l in text.splitlines() if l.split()[:2] == ["0", "train"])
    assert line.split()[2:4] == [UNKNOWN, UNKNOWN] == ["n/a", "n/a"]


@pytest.mark.parametrize(
    "content, needle",
    [(None, "does not exist"), ("{not json", "not valid JSON"), ('{"a": 1}', "schema_version"),
     ('{"schema_version": 99, "epochs": []}', "newer than this wattwise understands")],
)
def test_bad_input_one_line_error(tmp_path: Path, content: str | None, needle: str) -> None:
    path = tmp_path / "bad.json"
    if content is not None:
        path.write_text(content)
    proc = subprocess.run([sys.executable, "-m", "wattwise", "report", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattwise report: error:") and needle in lines[0]


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["report", "--help"])
    assert e.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_plot_runs_function(run_a: Path, tmp_path: Path) -> None:
    out = plot_runs([load_summary(run_a)], tmp_path / "p.png")
    assert out.exists() and out.stat().st_size > 5000


def _record(phase: str, joules: float | None, samples: int | None, seconds: float = 2.0) -> dict:
    return {"phase": phase, "joules": joules, "samples": samples, "seconds": seconds,
            "joules_per_sample": None if joules is None or not samples else joules / samples,
            "watts": None if joules is None else joules / seconds, "estimated": False}


def _v2_summary() -> dict:
    """A schema-2 summary: fit (two epochs, the second interrupted) then a test stage whose
    sample count is unknown (null)."""
    fit_phases = {"train": _record("train", 30.0, 100), "validate": _record("validate", 6.0, 40)}
    test_phase = {"test": _record("test", 5.0, None)}
    stage = {"status": "completed", "error": None, "started_at": None, "finished_at": None,
             "resumed_from": None}
    return {
        "schema_version": 2, "run_name": "staged", "status": "completed", "estimated": False,
        "meters": [{"name": "fake", "scope": "node", "domains": ["cpu:package-0"],
                    "use": "measured"}],
        "stages": [
            {**stage, "stage": "fit", "epochs_completed": 1,
             "totals": {"phases": fit_phases, "other": _record("other", 1.0, 0)}},
            {**stage, "stage": "test", "status": "failed", "error": "RuntimeError: boom",
             "epochs_completed": 0,
             "totals": {"phases": test_phase, "other": _record("other", 0.5, 0)}},
        ],
        "epochs": [
            {"epoch": 0, "stage": "fit", "stage_index": 0, "complete": True, "phases": fit_phases},
            {"epoch": 1, "stage": "fit", "stage_index": 0, "complete": False,
             "phases": {"train": _record("train", 3.0, 10)}},
            {"epoch": 0, "stage": "test", "stage_index": 1, "complete": True, "phases": test_phase},
        ],
        "epochs_completed": 1,
        "totals": {"phases": {**fit_phases, **test_phase}, "other": _record("other", 1.5, 0),
                   "run": _record("run", 42.5, 0, seconds=9.0)},
    }


def test_v1_epochs_belong_to_fit(run_a: Path) -> None:
    rows = report_rows(load_summary(run_a))
    assert {r.stage for r in rows if r.epoch is not None} == {"fit"}
    assert {r.stage for r in rows if r.epoch is None} == {"all"}
    assert "stage" not in format_report([load_summary(run_a)]).splitlines()[1].split()
    assert "stage" in CSV_COLUMNS


def test_v2_rows_carry_their_stage_and_unknown_samples() -> None:
    rows = report_rows(_v2_summary())
    by_key = {(r.stage, r.epoch, r.phase): r for r in rows}
    assert by_key[("fit", 0, "train")].joules == pytest.approx(30.0)
    assert by_key[("fit", 1, "train")].joules == pytest.approx(3.0)
    test = by_key[("test", 0, "test")]
    assert test.samples is None and test.joules_per_sample is None and test.joules == 5.0
    assert by_key[("all", None, "test")].samples is None


def test_v2_report_table_has_a_stage_column() -> None:
    text = format_report([_v2_summary()])
    lines = [line.split() for line in text.splitlines()]
    assert lines[1][:3] == ["stage", "epoch", "phase"]
    assert ["fit", "0", "train", "30.00"] == next(l for l in lines if l[:3] == ["fit", "0", "train"])[:4]
    test = next(l for l in lines if l[:3] == ["test", "0", "test"])
    assert test[3] == "5.00" and test[4] == UNKNOWN and test[7] == UNKNOWN  # J/sample, samples


def test_v2_run_table_is_grouped_by_stage() -> None:
    text = format_run_table(_v2_summary())
    lines = [line.split() for line in text.splitlines()]
    assert lines[1] == ["stage", "phase", "joules", "J/sample", "W", "seconds", "samples"]
    assert ["fit", "train", "30.00"] == next(l for l in lines if l[:2] == ["fit", "train"])[:3]
    assert next(l for l in lines if l[:2] == ["test", "test"])[3] == UNKNOWN
    assert next(l for l in lines if l[:2] == ["all", "run"])[2] == "42.50"
    assert "stage test: failed (RuntimeError: boom)" in text


def test_v2_csv_has_the_stage() -> None:
    rows = list(csv.DictReader(io.StringIO(rows_to_csv(report_rows(_v2_summary(), "staged")))))
    assert [(r["stage"], r["epoch"], r["phase"]) for r in rows][:4] == [
        ("fit", "0", "train"), ("fit", "0", "validate"), ("fit", "1", "train"), ("test", "0", "test")
    ]
    assert rows[3]["samples"] == "" and rows[3]["joules_per_sample"] == ""


# --------------------------------------------------------------------------------------------
# the figure of report --plot


def _four_epoch_run(path: Path, name: str | None, *, estimated: bool = False) -> Path:
    meter = FakeMeter(("cpu:package-0",), estimated=estimated,
                      name="codecarbon" if estimated else "fake")
    tracker = EnergyTracker([meter], summary_path=path, run_name=name)
    tracker.start()
    for epoch in range(4):
        tracker.start_window("train", epoch)
        tracker.add_batch(samples=TRAIN_SAMPLES)
        meter.advance(30.0 - epoch)
        tracker.end_window()
        tracker.start_window("validate", epoch)
        tracker.add_batch(samples=VAL_SAMPLES)
        meter.advance(5.0)
        tracker.end_window()
        tracker.end_epoch()
    tracker.finish("completed")
    return path


def test_figure_panels_ticks_legend_and_estimates(tmp_path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from wattwise.report import report_figure

    a = _four_epoch_run(tmp_path / "a" / "energy.json", None)
    b = _four_epoch_run(tmp_path / "b" / "energy.json", None, estimated=True)
    fig = report_figure([load_summary(a), load_summary(b)])
    ax_j, ax_s, ax_p = fig.axes
    assert "epoch" in ax_j.get_title().lower() and "[J]" in ax_j.get_ylabel()
    assert "per sample" in ax_s.get_title() and "J/sample" in ax_s.get_ylabel()
    # J/sample per epoch is its own panel, with the per-epoch values
    lines = ax_s.get_lines()
    assert list(lines[0].get_xdata()) == [0, 1, 2, 3]
    assert list(lines[0].get_ydata()) == pytest.approx([(30.0 - e) / TRAIN_SAMPLES for e in range(4)])
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    for ax in (ax_j, ax_s):  # integer epoch ticks
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    # one legend, outside every panel, labelled by run names; the estimate says so
    (legend,) = fig.legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts == ["a/energy", "b/energy (estimated)"]
    box = legend.get_window_extent(renderer)
    for ax in fig.axes:
        assert not box.overlaps(ax.get_tightbbox(renderer)), "legend overlaps a panel"
    # estimates: dashed line with open markers, hatched bars; measurements solid and filled
    measured, estimated = ax_j.get_lines()
    assert measured.get_linestyle() == "-" and estimated.get_linestyle() == "--"
    assert estimated.get_markerfacecolor() == "white"
    hatches = {c.get_label(): {bar.get_hatch() for bar in c} for c in ax_p.containers}
    assert hatches == {"a/energy": {None}, "b/energy (estimated)": {"///"}}
    assert [t.get_text() for t in ax_p.get_xticklabels()] == ["train", "validate"]


def test_figure_unknown_is_a_gap_not_zero(tmp_path: Path) -> None:
    import math

    from wattwise.report import report_figure

    data = load_summary(_four_epoch_run(tmp_path / "energy.json", "gappy")).to_dict()
    rec = data["epochs"][1]["phases"]["train"]
    rec.update(joules=None, joules_per_sample=None, watts=None)
    data["totals"]["phases"]["validate"].update(joules=None, joules_per_sample=None)
    fig = report_figure([data])
    ys = list(fig.axes[0].get_lines()[0].get_ydata())
    assert math.isnan(ys[1]) and ys[0] == pytest.approx(35.0)
    assert math.isnan(fig.axes[1].get_lines()[0].get_ydata()[1])
    assert [c.get_label() for c in fig.axes[2].containers] == ["gappy"]  # train only: no 0 bar
    assert UNKNOWN in [t.get_text() for t in fig.axes[2].texts]


def test_plot_png_is_written_with_the_legend_inside_the_image(tmp_path: Path) -> None:
    from matplotlib.image import imread

    a = _four_epoch_run(tmp_path / "r1.json", "small")
    b = _four_epoch_run(tmp_path / "r2.json", "large")
    out = plot_runs([load_summary(a), load_summary(b)], tmp_path / "fig.png")
    img = imread(out)
    assert img.shape[1] > img.shape[0] > 400  # a wide three-panel figure at 150 dpi
    assert (img[-40:, :, :3] < 0.5).any()  # the legend below the panels made it into the file


def test_run_labels_use_names_not_numbers(tmp_path: Path) -> None:
    from wattwise.report import run_labels

    a = load_summary(_four_epoch_run(tmp_path / "x" / "energy.json", None))
    b = load_summary(_four_epoch_run(tmp_path / "y" / "energy.json", None))
    c = load_summary(_four_epoch_run(tmp_path / "p" / "s.json", "same"))
    d = load_summary(_four_epoch_run(tmp_path / "q" / "s.json", "same"))
    assert run_labels([a, b]) == ["x/energy", "y/energy"]
    assert run_labels([c, d]) == ["same (p/s)", "same (q/s)"]
    assert run_labels([a, a]) == ["energy", "energy#2"]  # the same file twice
