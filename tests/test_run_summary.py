"""``wattwise.load_summary``: the loaded run summary as a mapping, an HTML table, a DataFrame."""

from __future__ import annotations

import copy
import json
import pickle
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import wattwise
from wattwise import EnergyTracker, RunSummary, load_summary
from wattwise.console import UNKNOWN
from wattwise.testing import FakeMeter

EPOCHS = [(30.0, 6.0), (24.0, 4.0)]  # (train J, validate J) the fake counter moves per epoch
TRAIN_SAMPLES, VAL_SAMPLES = 106, 40


def _run(path: Path, name: str | None, *, estimated: bool = False, epochs: int = 2) -> Path:
    meter = FakeMeter(("cpu:package-0",), estimated=estimated,
                      name="codecarbon" if estimated else "fake")
    tracker = EnergyTracker([meter], summary_path=path, run_name=name)
    tracker.start()
    for epoch in range(epochs):
        train_j, val_j = EPOCHS[epoch % len(EPOCHS)]
        tracker.start_window("train", epoch)
        tracker.add_batch(samples=TRAIN_SAMPLES)
        meter.advance(train_j)
        tracker.end_window()
        tracker.start_window("validate", epoch)
        tracker.add_batch(samples=VAL_SAMPLES)
        meter.advance(val_j)
        tracker.end_window()
        tracker.end_epoch()
    tracker.finish("completed")
    return path


@pytest.fixture(autouse=True)
def _quiet(recwarn: pytest.WarningsRecorder) -> None:
    """Estimate runs warn (EstimateWarning); that is the tracker's business, not these tests'."""


class _Table(HTMLParser):
    """The cells of an HTML table, row by row (header included)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _table(html: str) -> list[list[str]]:
    parser = _Table()
    parser.feed(html)
    return parser.rows


def test_load_summary_is_a_read_only_mapping_over_the_json(tmp_path: Path) -> None:
    path = _run(tmp_path / "run" / "energy.json", "mlp")
    s = wattwise.load_summary(path)
    assert isinstance(s, RunSummary) and s.path == path
    raw = json.loads(path.read_text())
    assert dict(s) == raw and s == raw  # dict users keep working; no extra keys
    assert s["totals"]["phases"]["train"]["joules"] == pytest.approx(54.0)
    assert s.name == "mlp" and s.estimated is False
    assert json.loads(json.dumps(s)) == raw and isinstance(s, dict)
    for change in (lambda: s.__setitem__("status", "x"), lambda: s.pop("status"),
                   lambda: s.update(status="x"), lambda: s.__delitem__("status")):
        with pytest.raises(TypeError, match="read-only"):
            change()
    again = pickle.loads(pickle.dumps(s))
    assert again == s and again.path == path and copy.deepcopy(s) == s
    edited = s.to_dict()
    edited["status"] = "edited"
    edited["totals"]["phases"]["train"]["joules"] = 0.0
    assert s["status"] == "completed" and s["totals"]["phases"]["train"]["joules"] == 54.0
    assert "mlp" in repr(s) and "measured" in repr(s)


def test_html_table_has_every_epoch_and_phase(tmp_path: Path) -> None:
    s = load_summary(_run(tmp_path / "energy.json", "mlp"))
    html = s._repr_html_()
    rows = _table(html)
    assert rows[0] == ["epoch", "phase", "joules [J]", "J/sample [J]", "watts [W]",
                       "seconds [s]", "samples", "source"]
    body = {(r[0], r[1]): r for r in rows[1:]}
    assert body[("0", "train")][2] == "30.00" and body[("1", "validate")][2] == "4.00"
    assert body[("0", "train")][6] == str(TRAIN_SAMPLES) and body[("0", "train")][7] == "measured"
    assert body[("total", "train")][2] == "54.00"
    assert "<code>mlp</code>" in html and "ESTIMATED" not in html


def test_html_marks_estimates(tmp_path: Path) -> None:
    s = load_summary(_run(tmp_path / "energy.json", "est", estimated=True))
    html = s._repr_html_()
    assert "ESTIMATED" in html
    sources = {r[-1] for r in _table(html)[1:]}
    assert sources == {"estimated"}


def test_html_shows_unknown_as_na_never_zero(tmp_path: Path) -> None:
    meter = FakeMeter(("cpu:package-0",), update_period_s=10.0)
    tracker = EnergyTracker([meter], summary_path=tmp_path / "s.json", run_name="stalled")
    tracker.start()
    tracker.start_window("train", 0)
    tracker.add_batch(samples=8)
    meter.stall()
    tracker.end_window()
    tracker.end_epoch()
    tracker.finish()
    rows = _table(load_summary(tmp_path / "s.json")._repr_html_())
    train = next(r for r in rows if r[:2] == ["0", "train"])
    assert train[2] == train[3] == train[4] == UNKNOWN
    assert train[6] == "8"


def test_html_escapes_and_shortens_long_runs(tmp_path: Path) -> None:
    s = load_summary(_run(tmp_path / "energy.json", "<b>x</b>", epochs=30))
    html = s._repr_html_()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html
    rows = _table(html)
    epochs = {r[0] for r in rows[1:] if r[0].isdigit()}
    assert epochs == {str(e) for e in [*range(10), *range(20, 30)]}
    assert any("10 epochs not shown" in r[0] for r in rows if len(r) == 1)


def test_to_pandas_one_row_per_epoch_and_phase(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    s = load_summary(_run(tmp_path / "energy.json", "mlp"))
    df = s.to_pandas()
    assert list(df.columns) == ["run", "stage", "epoch", "phase", "joules", "joules_per_sample",
                                "watts", "seconds", "samples", "estimated", "source"]
    assert len(df) == 2 * len(EPOCHS)
    tr = df[(df.epoch == 1) & (df.phase == "train")].iloc[0]
    assert tr.joules == pytest.approx(24.0)
    assert tr.joules_per_sample == pytest.approx(24.0 / TRAIN_SAMPLES)
    assert tr.run == "mlp" and tr.stage == "fit" and tr.source == "measured"
    assert str(df.epoch.dtype) == "Int64" and str(df.samples.dtype) == "Int64"
    with_totals = s.to_dataframe(totals=True)
    total = with_totals[with_totals.stage == "all"]
    assert set(total.phase) == {"train", "validate"} and total.epoch.isna().all()
    assert total[total.phase == "train"].samples.iloc[0] == TRAIN_SAMPLES * len(EPOCHS)
    assert not pd.isna(total[total.phase == "train"].joules.iloc[0])


def test_to_pandas_unknown_is_missing_not_zero(tmp_path: Path) -> None:
    pytest.importorskip("pandas")
    data = json.loads(_run(tmp_path / "energy.json", "mlp").read_text())
    rec = data["epochs"][0]["phases"]["train"]
    rec.update(joules=None, joules_per_sample=None, watts=None, samples=None)
    df = RunSummary(data).to_pandas()
    row = df[(df.epoch == 0) & (df.phase == "train")].iloc[0]
    assert row.isna()[["joules", "joules_per_sample", "watts", "samples"]].all()


def test_to_pandas_without_pandas_names_the_install(tmp_path: Path) -> None:
    path = _run(tmp_path / "energy.json", "mlp")
    code = ("import sys; sys.modules['pandas'] = None\n"
            "import wattwise\n"
            f"s = wattwise.load_summary({str(path)!r})\n"
            "try:\n    s.to_pandas()\nexcept ImportError as e:\n    print('ERR', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "ERR" in proc.stdout and "pip install pandas" in proc.stdout


def test_import_wattwise_does_not_import_pandas_or_matplotlib() -> None:
    code = ("import sys, wattwise\n"
            "print(sorted(m for m in ('pandas', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=True)
    assert proc.stdout.strip() == "[]"


def test_html_and_frame_of_a_fit_then_test_run(tmp_path: Path) -> None:
    """A schema-2 run with two stages: the table gets a stage column, the frame a stage each."""
    meter = FakeMeter(("cpu:package-0",))
    tracker = EnergyTracker([meter], summary_path=tmp_path / "s.json", run_name="staged")
    tracker.begin_stage("fit")
    tracker.start_window("train", 0)
    tracker.add_batch(samples=10)
    meter.advance(5.0)
    tracker.end_window()
    tracker.end_epoch()
    tracker.end_stage()
    tracker.begin_stage("test")
    tracker.start_window("test", 0)
    tracker.add_batch(samples=4)
    meter.advance(2.0)
    tracker.end_window()
    tracker.end_epoch()
    tracker.end_stage()
    tracker.finish()
    s = load_summary(tmp_path / "s.json")
    rows = _table(s._repr_html_())
    assert rows[0][:3] == ["stage", "epoch", "phase"]
    assert ["fit", "0", "train", "5.00"] in [r[:4] for r in rows]
    assert ["test", "0", "test", "2.00"] in [r[:4] for r in rows]
    pytest.importorskip("pandas")
    df = s.to_pandas()
    assert list(zip(df.stage, df.phase, df.joules)) == [("fit", "train", 5.0), ("test", "test", 2.0)]
