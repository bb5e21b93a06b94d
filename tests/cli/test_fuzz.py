"""Fuzzing the CLI with hypothesis: whatever the arguments or input files, ``wattwise`` exits
with 0 or 2 and never prints a traceback; an exit code 2 ends stderr with one
``wattwise <command>: error: ...`` line.

(a) argument vectors for each subcommand from a small alphabet of plausible and implausible
tokens (its flags, numbers, paths that exist or not, ``-``). ``demo`` and ``sweep`` never
train: their training functions are replaced by one that stops the command (every check comes
before training, so reaching it means the arguments were accepted). ``probe`` does not sleep.
(b) real run summaries (EnergyTracker + FakeMeter) mutated (keys deleted, values replaced by
other JSON values, nested, the text truncated) fed to ``report`` and ``fit``; the same for a
``sweep.json`` and a BUTTER-style CSV.

Deterministic (``derandomize=True``) and in-process (``main(argv)``), ~10 s in all.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Inputs, Result, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# FUZZ_N=1000 explores more (random, not derandomized): a longer hunt for new failures
_N = os.environ.get("FUZZ_N")
FUZZ = settings(max_examples=int(_N or 60), deadline=None, derandomize=not _N, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

NUMBERS = ["0", "1", "2", "3", "-1", "-5", "64", "1e308", "-1e308", "nan", "inf", "0.5",
           "99999999999999999999", "4294967296", "1_000", "0x10", ""]
WORDS = ["-", "--", "auto", "cpu", "gpu", "butter-e-cpu", "rapl", "nvml", "codecarbon", "bogus",
         "rectangle", "trapezoid", "pyramid", "64,32,10", "64,0,10", "1,2,3", "a,b", ",",
         "L2=2M", "L3=32M,2", "L2=", "=", "b", "f", "lightning", "keras", "201_pol", "é"]


class _Trains(Exception):
    """Raised instead of training: the arguments passed every check."""


def _stop(*args: Any, **kwargs: Any) -> None:
    raise _Trains


def _flags(command: str) -> list[str]:
    from wattwise.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sorted({o for a in sub.choices[command]._actions for o in a.option_strings})


def _paths(inputs: Inputs, out: Path) -> list[str]:
    return [str(p) for p in (inputs.summary, inputs.advised, inputs.sweep_summary,
                             inputs.butter_csv, inputs.coefficients, inputs.binary,
                             inputs.missing, inputs.folder, inputs.sweep_index)] + [
        str(out / "new.png"), str(out / "new.csv"), str(out / "new.json"),
        str(out / "no" / "such" / "x.png"), str(out / "x.nosuchformat"), str(out)]


@contextlib.contextmanager
def _sandbox() -> Iterator[Path]:
    """A scratch working folder; no training, no sleeping, matplotlib's Agg backend."""
    old = Path.cwd()
    scratch = Path(tempfile.mkdtemp(prefix="wattwise-fuzz-"))
    with pytest.MonkeyPatch.context() as mp:
        import wattwise.cli.demo as demo

        mp.setattr(demo, "_train", _stop)
        mp.setattr(demo, "train_lightning", _stop)
        mp.setattr(time, "sleep", lambda s: None)
        mp.setenv("MPLBACKEND", "Agg")
        os.chdir(scratch)
        try:
            yield scratch
        finally:
            os.chdir(old)
            shutil.rmtree(scratch, ignore_errors=True)


def _check(result: Result, argv: list[str]) -> None:
    assert "Traceback" not in result.err, (argv, result.err)
    assert result.code in (0, 2), (argv, result.code, result.err[-2000:])
    if result.code == 2:
        lines = result.err.strip().splitlines()
        assert lines and lines[-1].startswith("wattwise") and ": error: " in lines[-1], (
            argv, result.err)


def _run(argv: list[str]) -> Result | None:
    """``run_cli(argv)``; None when the command reached training (arguments accepted)."""
    try:
        return run_cli(argv)
    except _Trains:
        return None


# --------------------------------------------------------------------------------------------
# (a) argument vectors


@pytest.mark.parametrize("command", ["report", "fit", "advise", "demo", "sweep", "probe"])
def test_fuzz_arguments(command: str, inputs: Inputs) -> None:
    out = inputs.root / "fuzz-out"
    out.mkdir(exist_ok=True)
    tokens = _flags(command) + NUMBERS + WORDS + _paths(inputs, out)
    if command == "probe":  # never open codecarbon or pyRAPL (slow imports); fakes elsewhere
        tokens = [t for t in tokens if t not in ("codecarbon", "--meters")]
        prefix = ["probe", "--meters", "rapl", "nvml"]
    else:
        prefix = [command]

    @FUZZ
    @given(st.lists(st.sampled_from(tokens), max_size=7))
    def fuzz(args: list[str]) -> None:
        argv = prefix + args
        with _sandbox():
            result = _run(argv)
        if result is not None:
            _check(result, argv)

    fuzz()


# --------------------------------------------------------------------------------------------
# (b) mutated input files

def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children,
                                                            max_size=3)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=5),
    _containers, max_leaves=6,
)


def _children(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return list(node)
    return list(range(len(node))) if isinstance(node, list) else []


def _pick(draw: st.DrawFn, data: Any) -> tuple[Any, Any] | None:
    """A (container, key) in the JSON tree ``data``: a walk from the root that stops at each
    level with probability 1/2, so top-level fields are as likely as any deep one."""
    parent, keys = data, _children(data)
    if not keys:
        return None
    while True:
        key = draw(st.sampled_from(keys))
        child = parent[key]
        if not _children(child) or not draw(st.booleans()):
            return parent, key
        parent, keys = child, _children(child)


@st.composite
def mutated(draw: st.DrawFn, original: dict[str, Any]) -> str:
    """The JSON text of ``original`` with 1 to 3 mutations, possibly truncated."""
    import copy

    data = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        spot = _pick(draw, data)
        if spot is None:
            break
        parent, key = spot
        how = draw(st.sampled_from(["delete", "replace", "replace", "nest", "list"]))
        if how == "delete":
            del parent[key]
        elif how == "replace":
            parent[key] = draw(JSON_VALUES)
        elif how == "nest":
            parent[key] = {"value": parent[key]}
        else:
            parent[key] = [parent[key]] * draw(st.integers(0, 2))
    text = json.dumps(data)
    if draw(st.integers(0, 4)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


def _summary_strategy(path: Path) -> st.SearchStrategy[str]:
    return mutated(json.loads(path.read_text(encoding="utf-8")))


@FUZZ
@given(data=st.data())
def test_fuzz_report_summaries(inputs: Inputs, data: st.DataObject) -> None:
    text = data.draw(_summary_strategy(inputs.summary), label="summary")
    extra = data.draw(st.sampled_from([[], ["--csv", "-"], ["--csv", "out.csv"]]), label="extra")
    with _sandbox() as scratch:
        path = scratch / "summary.json"
        path.write_text(text, encoding="utf-8")
        argv = ["report", str(path), str(inputs.summary), *extra]
        result = _run(argv)
    assert result is not None
    _check(result, argv)


@settings(FUZZ, max_examples=15)
@given(data=st.data())
def test_fuzz_report_plot(inputs: Inputs, data: st.DataObject) -> None:
    """Fewer examples: every accepted summary is drawn with matplotlib."""
    text = data.draw(_summary_strategy(inputs.summary), label="summary")
    with _sandbox() as scratch:
        path = scratch / "summary.json"
        path.write_text(text, encoding="utf-8")
        argv = ["report", str(path), "--plot", str(scratch / "p.png")]
        result = _run(argv)
    assert result is not None
    _check(result, argv)


@FUZZ
@given(data=st.data())
def test_fuzz_fit_summaries(inputs: Inputs, data: st.DataObject) -> None:
    pytest.importorskip("scipy")
    text = data.draw(_summary_strategy(inputs.advised), label="summary")
    with _sandbox() as scratch:
        path = scratch / "advised.json"
        path.write_text(text, encoding="utf-8")
        argv = ["fit", str(path), str(inputs.advised), "--folds", "0", "--allow-estimates"]
        result = _run(argv)
    assert result is not None
    _check(result, argv)


@FUZZ
@given(data=st.data())
def test_fuzz_fit_sweep_folder(inputs: Inputs, data: st.DataObject) -> None:
    """A ``wattwise sweep`` folder whose summary or ``sweep.json`` is mutated."""
    pytest.importorskip("scipy")
    which = data.draw(st.sampled_from(["summary", "index"]), label="which")
    source = inputs.sweep_summary if which == "summary" else inputs.sweep_index
    text = data.draw(_summary_strategy(source), label="text")
    with _sandbox() as scratch:
        shutil.copy(inputs.sweep_summary, scratch / inputs.sweep_summary.name)
        shutil.copy(inputs.sweep_index, scratch / "sweep.json")
        (scratch / source.name).write_text(text, encoding="utf-8")
        argv = ["fit", str(scratch / inputs.sweep_summary.name), "--folds", "0",
                "--hardware", "butter-e-cpu"]
        result = _run(argv)
    assert result is not None
    _check(result, argv)


CSV_CELLS = st.sampled_from(["", "0", "-1", "3", "1e308", "nan", "inf", "99999999999999999999",
                             "201_pol", "mnist", "rectangle", "trapezoid", "x", "true", '"',
                             ",", "\n", "é", "1024"])


@FUZZ
@given(data=st.data())
def test_fuzz_fit_csv(inputs: Inputs, data: st.DataObject) -> None:
    """A BUTTER-style CSV with cells replaced, lines dropped or the text truncated."""
    pytest.importorskip("scipy")
    rows = [line.split(",") for line in inputs.butter_csv.read_text().splitlines()]
    for _ in range(data.draw(st.integers(1, 4), label="n")):
        r = data.draw(st.integers(0, len(rows) - 1), label="row")
        if rows[r]:
            c = data.draw(st.integers(0, len(rows[r]) - 1), label="col")
            rows[r][c] = data.draw(CSV_CELLS, label="cell")
    text = "\n".join(",".join(r) for r in rows) + "\n"
    if data.draw(st.booleans(), label="truncate"):
        text = text[: data.draw(st.integers(0, len(text)), label="at")]
    with _sandbox() as scratch:
        path = scratch / "runs.csv"
        path.write_text(text, encoding="utf-8")
        argv = ["fit", str(path), "--folds", "0"]
        result = _run(argv)
    assert result is not None
    _check(result, argv)
