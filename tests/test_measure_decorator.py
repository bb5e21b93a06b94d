"""``@wattwise.measure``: bare and with arguments, the summary of each call, failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import wattwise
from wattwise.errors import ConfigurationError
from wattwise.testing import FakeMeter


def test_bare_decorator_is_importable_and_wraps() -> None:
    @wattwise.measure
    def f(a: int, b: int = 1) -> int:
        """Doc."""
        return a + b

    assert f.__name__ == "f" and f.__doc__ == "Doc." and f.last_summary is None
    assert isinstance(f, wattwise.measuring.Measured)


def test_each_call_is_a_run_with_its_summary(tmp_path: Path) -> None:
    meter = FakeMeter(("cpu:package-0",))
    path = tmp_path / "f.json"

    @wattwise.measure(meters=[meter], summary_path=path)
    def work(joules: float) -> str:
        tracker = work.tracker
        assert tracker is not None and tracker.status == "running"
        with tracker.epoch(), tracker.phase("train"):
            tracker.add_batch(4)
            meter.advance(joules)
        meter.advance(1.0)  # outside the phase: "other"
        return "done"

    assert work(8.0) == "done"
    first = work.last_summary
    assert first is not None and first["status"] == "completed"
    assert first["run_name"].endswith("work")
    assert first["totals"]["run"]["joules"] == 9.0
    assert first["totals"]["phases"]["train"]["joules_per_sample"] == 2.0
    assert work(2.0) == "done"  # a second call: a new run, the file rewritten
    assert work.last_summary is not None and work.last_summary["totals"]["run"]["joules"] == 3.0
    on_disk = json.loads(path.read_text())
    assert on_disk["totals"]["run"]["joules"] == 3.0 and on_disk["status"] == "completed"


def test_a_raising_function_is_failed_and_the_error_propagates() -> None:
    meter = FakeMeter(("gpu:0",))

    @wattwise.measure(meters=[meter])
    def broken() -> None:
        meter.advance(5.0)
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        broken()
    summary = broken.last_summary
    assert summary is not None and summary["status"] == "failed"
    assert "KeyError" in summary["error"] and summary["totals"]["run"]["joules"] == 5.0


def test_methods_are_measured() -> None:
    meter = FakeMeter(("gpu:0",))

    class Model:
        @wattwise.measure(meters=[meter])
        def fit(self, n: int) -> int:
            meter.advance(float(n))
            return n * 2

    assert Model().fit(3) == 6
    assert Model.fit.last_summary is not None
    assert Model.fit.last_summary["totals"]["run"]["joules"] == 3.0


@pytest.mark.parametrize(("kwargs", "word"), [
    ({"meters": "bogus"}, "meters='bogus'"),
    ({"summary_path": 3}, "summary_path=3"),
    ({"print_summary": "yes"}, "print_summary='yes'"),
    ({"config": {"meters": "auto"}}, "config="),
])
def test_bad_arguments_raise_at_decoration(kwargs: dict[str, Any], word: str) -> None:
    with pytest.raises(ConfigurationError, match=word.replace("(", r"\(")) as info:
        wattwise.measure(**kwargs)(lambda: None)
    assert "measure(" in str(info.value)


def test_coroutine_and_generator_functions_are_refused() -> None:
    async def coro() -> None:
        pass

    def gen() -> Any:
        yield 1

    for fn in (coro, gen):
        with pytest.raises(ConfigurationError, match="returns before its work is done"):
            wattwise.measure(fn)
