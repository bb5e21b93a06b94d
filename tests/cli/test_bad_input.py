"""Every bad input to the CLI is one line on stderr and exit code 2, never a traceback
(issue "Counters you can trust", part 3). Each case is a real file in tmp_path run through
``main(argv)``; some also through ``python -m wattwise`` in a subprocess."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import Inputs, assert_one_line_error, run_cli

Mutation = Callable[[dict[str, Any]], None]


def _summary(inputs: Inputs, tmp_path: Path, mutate: Mutation | None = None,
             name: str = "summary.json", source: Path | None = None) -> Path:
    """A copy of a real run summary, changed by ``mutate``."""
    data = json.loads((source or inputs.summary).read_text(encoding="utf-8"))
    if mutate is not None:
        mutate(data)
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def _set(*keys: Any, value: Any) -> Mutation:
    """A mutation setting ``data[k0][k1]...`` to ``value``."""
    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = copy.deepcopy(value)
    return mutate


def _delete(*keys: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]
    return mutate


def _subprocess(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    return subprocess.run([sys.executable, "-m", "wattwise", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------------------------
# report: files that are not run summaries, and summaries with fields of the wrong type

REPORT_CASES: list[tuple[str, Mutation, str]] = [
    ("epochs-int", _set("epochs", value=5), "epochs is 5; expected a list"),
    ("epochs-object", _set("epochs", value={"a": 1}), "epochs is an object; expected a list"),
    ("epoch-null", _set("epochs", 0, value=None), "epochs[0] is null"),
    ("phases-null", _set("epochs", 0, "phases", value=None), "epochs[0].phases is null"),
    ("phases-list", _set("epochs", 1, "phases", value=[{"phase": "train"}]),
     "epochs[1].phases is a list"),
    ("phase-record-list", _set("epochs", 0, "phases", "train", value=[1, 2]),
     "epochs[0].phases.train is a list"),
    ("joules-string", _set("epochs", 0, "phases", "train", "joules", value="30 J"),
     'epochs[0].phases.train.joules is "30 J"'),
    ("joules-negative", _set("epochs", 0, "phases", "validate", "joules", value=-4.0),
     "joules is -4.0; expected a finite number >= 0"),
    ("samples-float", _set("totals", "phases", "train", "samples", value=12.5),
     "totals.phases.train.samples is 12.5"),
    ("samples-huge", _set("totals", "phases", "train", "samples", value=10**30),
     "totals.phases.train.samples is 1000000000000000000000000000000"),
    ("batches-bool", _set("totals", "phases", "train", "batches", value=True),
     "totals.phases.train.batches is true"),
    ("seconds-object", _set("totals", "other", "seconds", value={"s": 1}),
     "totals.other.seconds is an object"),
    ("totals-missing", _delete("totals"), "totals is null; expected an object"),
    ("totals-string", _set("totals", value="x"), 'totals is "x"'),
    ("totals-phases-list", _set("totals", "phases", value=[]), "totals.phases is a list"),
    ("totals-run-string", _set("totals", "run", value="all"), 'totals.run is "all"'),
    ("stage-totals-number", _set("stages", 0, "totals", value=3), "stages[0].totals is 3"),
    ("stages-object", _set("stages", value={}), "stages is an object"),
    ("meters-string", _set("meters", value="fake"), 'meters is "fake"'),
    ("run-name-list", _set("run_name", value=["a"]), "run_name is a list"),
    ("epoch-index-string", _set("epochs", 0, "epoch", value="0"), 'epochs[0].epoch is "0"'),
    ("domain-joules-string", _set("epochs", 0, "phases", "train", "joules_by_domain",
                                  value={"cpu:package-0": "many"}), "joules_by_domain"),
    ("schema-version-0", _set("schema_version", value=0), "schema_version"),
]


@pytest.mark.parametrize("label, mutate, needle", REPORT_CASES, ids=[c[0] for c in REPORT_CASES])
def test_report_refuses_a_malformed_summary(inputs: Inputs, tmp_path: Path, label: str,
                                            mutate: Mutation, needle: str) -> None:
    path = _summary(inputs, tmp_path, mutate)
    for extra in ([], ["--csv", "-"]):
        result = run_cli(["report", str(path), *extra])
        line = assert_one_line_error(result, "report", needle, str(path))
        assert result.err.strip() == line and result.out == ""  # no half table, no CSV


def test_report_non_utf8_file(inputs: Inputs, tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes('{"schema_version": 2, "run_name": "caf\u00e9"}'.encode("latin-1"))
    assert_one_line_error(run_cli(["report", str(path)]), "report", "not UTF-8 text")
    assert_one_line_error(run_cli(["report", str(inputs.binary)]), "report", "not UTF-8 text")


def test_report_deeply_nested_json(tmp_path: Path) -> None:
    path = tmp_path / "deep.json"
    path.write_text('{"schema_version": 2, "epochs": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert_one_line_error(run_cli(["report", str(path)]), "report", "nested too deeply")


def test_report_newer_schema_names_the_version(inputs: Inputs, tmp_path: Path) -> None:
    path = _summary(inputs, tmp_path, _set("schema_version", value=99))
    proc = _subprocess("report", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattwise report: error:")
    assert "schema_version=99" in lines[0] and "upgrade wattwise" in lines[0]


@pytest.mark.parametrize("mutate, needle", [
    (_set("epochs", value=5), "epochs is 5"),
    (_set("totals", "phases", "train", "joules", value="x"), 'totals.phases.train.joules is "x"'),
])
def test_report_subprocess_one_line(inputs: Inputs, tmp_path: Path, mutate: Mutation,
                                    needle: str) -> None:
    path = _summary(inputs, tmp_path, mutate)
    proc = _subprocess("report", str(path), "--plot", str(tmp_path / "p.png"), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattwise report: error:") and needle in lines[0]
    assert not (tmp_path / "p.png").exists()


def test_report_huge_joules_plot(inputs: Inputs, tmp_path: Path) -> None:
    """1e308 J is a finite number: the table shows it (3 significant digits, not 309), the plot
    is refused as one line instead of a matplotlib overflow."""
    path = _summary(inputs, tmp_path, _set("epochs", 0, "phases", "train", "joules", value=1e308))
    table = run_cli(["report", str(path)])
    assert table.code == 0 and "Traceback" not in table.err
    line = next(l for l in table.out.splitlines() if l.split()[:2] == ["0", "train"])
    assert line.split()[2] == "1e+308"
    png = tmp_path / "huge.png"
    assert_one_line_error(run_cli(["report", str(path), "--plot", str(png)]), "report",
                          "cannot draw plot", "check the run summaries")


def test_report_plot_and_csv_paths_checked_first(inputs: Inputs, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    r = run_cli(["report", str(inputs.summary), "--plot", str(missing / "e.png")])
    assert_one_line_error(r, "report", "--plot", "does not exist")
    assert r.out == ""  # refused before the tables
    r = run_cli(["report", str(inputs.summary), "--plot", str(tmp_path / "e.nosuchformat")])
    assert_one_line_error(r, "report", "--plot", "cannot draw a 'nosuchformat' file")
    r = run_cli(["report", str(inputs.summary), "--csv", str(tmp_path)])
    assert_one_line_error(r, "report", "--csv", "is a folder")


def test_report_csv_into_closed_pipe(inputs: Inputs, tmp_path: Path) -> None:
    """``--csv - | head -n 1``: the first line, then a quiet exit (no BrokenPipeError)."""
    path = tmp_path / "long.json"
    data = json.loads(inputs.summary.read_text(encoding="utf-8"))
    data["epochs"] = data["epochs"] * 2000  # ~ 4000 CSV rows, far more than a pipe buffer
    path.write_text(json.dumps(data), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = f"'{sys.executable}' -m wattwise report '{path}' '{path}' --csv - | head -n 1"
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.startswith("run,epoch,phase,joules,")
    assert len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.stderr == ""
    assert proc.returncode == 141  # 128 + SIGPIPE, what the shell shows for `cat` in its place


# --------------------------------------------------------------------------------------------
# fit


def _advised(inputs: Inputs, tmp_path: Path, mutate: Mutation) -> Path:
    return _summary(inputs, tmp_path, mutate, name="advised.json", source=inputs.advised)


FIT_CASES: list[tuple[str, Mutation, str]] = [
    ("totals-string", _set("totals", value="x"), 'totals is "x"'),
    ("batches-string", _set("totals", "phases", "train", "batches", value="abc"),
     'totals.phases.train.batches is "abc"'),
    ("advice-features-missing-backward", _delete("advice", "features", "backward"),
     "advice.features.backward is null; expected a list of 12 numbers"),
    ("advice-features-short", _set("advice", "features", "forward", value=[1.0, 2.0]),
     "advice.features.forward is a list; expected a list of 12 numbers"),
    ("advice-features-strings", _set("advice", "features", "test_forward", value=["1"] * 12),
     "advice.features.test_forward"),
    ("advice-features-null", _set("advice", "features", value=None), "advice.features is null"),
    ("advice-no-hierarchy", _delete("advice", "hierarchy"), "advice.hierarchy.kind is null"),
    ("advice-string", _set("advice", value="fast"), 'advice is "fast"'),
]


@pytest.mark.parametrize("label, mutate, needle", FIT_CASES, ids=[c[0] for c in FIT_CASES])
def test_fit_refuses_a_malformed_summary(inputs: Inputs, tmp_path: Path, label: str,
                                         mutate: Mutation, needle: str) -> None:
    path = _advised(inputs, tmp_path, mutate)
    result = run_cli(["fit", str(path), "--folds", "0"])
    line = assert_one_line_error(result, "fit", needle, str(path))
    assert result.err.strip() == line


def test_fit_accepts_the_unchanged_inputs(inputs: Inputs, tmp_path: Path) -> None:
    """The files the cases above break are good as they are (so a refusal is the change's)."""
    pytest.importorskip("scipy")
    out = tmp_path / "c.json"
    r = run_cli(["fit", str(inputs.advised), str(inputs.sweep_summary), "--folds", "0",
                 "--hardware", "cpu", "--out", str(out), "--allow-estimates"])
    assert r.code == 0, r.err
    assert "fitted 2 CPU run(s)" in r.out and out.is_file()
    r = run_cli(["fit", str(inputs.butter_csv), "--folds", "0"])
    assert r.code == 0, r.err


@pytest.mark.parametrize("index, needle", [
    ("{not json", "cannot read the sweep index"),
    (b"\xff\xfe\x00binary", "cannot read the sweep index"),
    ("[1, 2]", "is a list; expected the sweep index object"),
    ('{"points": []}', "n_in is null; expected an integer >= 1"),
    ('{"n_in": 64, "batch_size": 32}', "points is null; expected a list of objects"),
    ('{"n_in": 64, "batch_size": 32, "points": [7]}', "points is a list"),
    ('{"n_in": 64, "batch_size": "32", "points": []}', 'batch_size is "32"'),
    ('{"n_in": 64, "batch_size": 32, "points": [{"summary": "size-000002730.json"}]}',
     "widths of 'size-000002730.json' is null"),
    ('{"n_in": 64, "batch_size": 32, "points": [{"summary": "size-000002730.json", '
     '"widths": [40, -10]}]}', "expected a list of integers >= 1"),
])
def test_fit_corrupt_sweep_index(inputs: Inputs, tmp_path: Path, index: str | bytes,
                                 needle: str) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    summary = folder / inputs.sweep_summary.name
    summary.write_bytes(inputs.sweep_summary.read_bytes())
    sweep = folder / "sweep.json"
    sweep.write_bytes(index if isinstance(index, bytes) else index.encode())
    result = run_cli(["fit", str(summary), "--folds", "0"])
    line = assert_one_line_error(result, "fit", needle, str(sweep))
    assert result.err.strip() == line


@pytest.mark.parametrize("text, needle", [
    (b"dataset,shape,depth,size,is_gpu,energy\n201_pol,rectangle,3,1024,0,\xff\n",
     "not UTF-8 text"),
    ("dataset,shape,depth,size,is_gpu,energy\n201_pol,rectangle\n", "line 2"),
    ("dataset,shape,depth,size,is_gpu,energy\n201_pol,rectangle,3,1024,0,nan\n",
     "not a finite number of joules > 0"),
    ("dataset,shape,depth,size,is_gpu,energy\n201_pol,rectangle,99999999,1024,0,5\n",
     "depth 99999999 is not in 2..20"),
    ("dataset,shape,depth,size,is_gpu,energy\n201_pol,rectangle,3,1024,0,5\x00\n",
     "could not convert string to float"),
    ('dataset,shape,depth,size,is_gpu,energy\n"' + "x" * 200_000 + '",rectangle,3,1,0,5\n',
     "not a readable CSV: field larger than field limit"),
    ("a,b\n1,2\n", "needs columns"),
])
def test_fit_bad_csv(tmp_path: Path, text: str | bytes, needle: str) -> None:
    path = tmp_path / "runs.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert_one_line_error(run_cli(["fit", str(path)]), "fit", needle)


@pytest.mark.parametrize("argv, needle", [
    (["--folds", "-1"], "--folds '-1': expected 0 (off) or an integer in 2..1000"),
    (["--folds", "1"], "--folds '1'"),
    (["--out", "no/such/folder/c.json"], "--out 'no/such/folder/c.json'"),
])
def test_fit_bad_options(inputs: Inputs, tmp_path: Path, argv: list[str], needle: str) -> None:
    assert_one_line_error(run_cli(["fit", str(inputs.advised), *argv]), "fit", needle)


def test_fit_subprocess_one_line(inputs: Inputs, tmp_path: Path) -> None:
    path = _advised(inputs, tmp_path, _set("totals", "phases", "train", "batches", value="abc"))
    proc = _subprocess("fit", str(path), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattwise fit: error:"), proc.stderr
    assert "totals.phases.train.batches" in lines[0]


# --------------------------------------------------------------------------------------------
# demo and sweep: the seed is checked while the arguments are parsed


@pytest.mark.parametrize("command", ["demo", "sweep"])
@pytest.mark.parametrize("seed", ["-1", "18446744073709551616", "99999999999999999999", "1.5",
                                  "seven", "4294967296"])
def test_seed_out_of_range(command: str, seed: str, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli([command, "--seed", seed])
    line = assert_one_line_error(result, command, "--seed", repr(seed), "0..4294967295")
    assert result.err.strip() == line  # no usage block
    assert not (tmp_path / "wattwise_runs").exists()  # nothing made, nothing trained


def test_seed_subprocess(tmp_path: Path) -> None:
    proc = _subprocess("demo", "--seed", "-1", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "wattwise demo: error: argument --seed: '-1': expected an integer in 0..4294967295 "
        "(see `wattwise demo --help`)"]


def test_argparse_errors_are_one_line(tmp_path: Path) -> None:
    for argv, command in ((["demo", "--epochs", "x"], "demo"), (["report"], "report"),
                          (["sweep", "--sizes", "nan"], "sweep")):
        result = run_cli(argv)
        line = assert_one_line_error(result, command)
        assert result.err.strip() == line
    result = run_cli(["frobnicate"])
    assert result.code == 2 and result.err.strip().splitlines() == [
        result.err.strip()] and result.err.startswith("wattwise: error: argument COMMAND")


def test_sweep_plot_into_missing_folder_fails_before_training(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wattwise.cli.demo as demo

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("training started")

    monkeypatch.setattr(demo, "train_lightning", no_training)
    monkeypatch.chdir(tmp_path)
    plot = tmp_path / "missing" / "knee.png"
    result = run_cli(["sweep", "--sizes", "300", "--epochs", "1", "--out", str(tmp_path / "o"),
                      "--plot", str(plot)])
    assert_one_line_error(result, "sweep", "--plot", "does not exist")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------------------------
# advise --coefficients


@pytest.mark.parametrize("content, needle", [
    (None, "not UTF-8 text"),  # the binary file
    ('{"format": "wattwise-coefficients/1", "hardware": "cpu"}',
     "'coefficients' must be an object"),
    ("[1, 2, 3]", "expected a JSON object"),
    ('{"format": "wattwise-coefficients/1", "hardware": "cpu", "coefficients": {"k_e": 1}}',
     "missing coefficients"),
    ("{", "not JSON"),
    ("[" * 100_000, "not JSON"),
])
def test_advise_bad_coefficients_file(inputs: Inputs, tmp_path: Path, content: str | None,
                                      needle: str) -> None:
    path = inputs.binary
    if content is not None:
        path = tmp_path / "coefficients.json"
        path.write_text(content, encoding="utf-8")
    result = run_cli(["advise", "--widths", "64,32,10", "--hardware", "butter-e-cpu",
                      "--coefficients", str(path)])
    line = assert_one_line_error(result, "advise", "--coefficients", str(path), needle)
    assert result.err.strip() == line


@pytest.mark.parametrize("change, needle", [
    ({"fit_error": "small"}, "fit_error='small' is not a number"),
    ({"n_runs": [3]}, "n_runs=[3] is not a number"),
    ({"hardware": "tpu"}, "'tpu'"),
    ({"coefficients": {"k_e": "nan"}}, "must all be finite and >= 0"),
    ({"coefficients": {"k_p": -1.0}}, "must all be finite and >= 0"),
])
def test_advise_coefficients_wrong_content(inputs: Inputs, tmp_path: Path,
                                           change: dict[str, Any], needle: str) -> None:
    data = json.loads(inputs.coefficients.read_text(encoding="utf-8"))
    for key, value in change.items():
        if isinstance(value, dict):
            data[key].update(value)
        else:
            data[key] = value
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    result = run_cli(["advise", "--widths", "64,32,10", "--hardware", "butter-e-cpu",
                      "--coefficients", str(path)])
    assert_one_line_error(result, "advise", needle)


def test_advise_coefficients_binary_subprocess(inputs: Inputs, tmp_path: Path) -> None:
    proc = _subprocess("advise", "--widths", "64,32,10", "--hardware", "butter-e-cpu",
                       "--coefficients", str(inputs.binary), cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wattwise advise: error: --coefficients")


@pytest.mark.parametrize("argv, needle", [
    (["--shape", "rectangle", "--depth", "99999999", "--size", "1000", "--inputs", "4",
      "--outputs", "2"], "--depth '99999999': expected an integer in 2..100"),
    (["--widths", "64,99999999999999999999,10"], "each in 1..1_000_000_000"),
    (["--widths", "64,10", "--batch-size", "99999999999999999999"], "--batch-size"),
    (["--widths", "64,10", "--plot", "no/such/dir/p.png"], "--plot 'no/such/dir/p.png'"),
])
def test_advise_out_of_range(argv: list[str], needle: str) -> None:
    assert_one_line_error(run_cli(["advise", *argv]), "advise", needle)
