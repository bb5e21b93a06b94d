"""Tests of wattwise.testing.FakeMeter."""

from __future__ import annotations

import threading
import time

import pytest

from wattwise.errors import ConfigurationError, MeterReadError
from wattwise.meters.base import Meter
from wattwise.testing import FakeMeter


def test_is_a_meter_with_defaults() -> None:
    m = FakeMeter()
    assert isinstance(m, Meter)
    assert m.domains == ("fake:0",)
    assert m.name == "fake" and m.scope == "node" and not m.estimated
    r = m.read()
    assert dict(r.joules) == {"fake:0": 0.0}
    assert m.reads == 1
    assert not r.estimated


def test_joules_per_read_and_advance() -> None:
    m = FakeMeter(("a", "b"), joules_per_read=2.0)
    assert dict(m.read().joules) == {"a": 2.0, "b": 2.0}
    m.advance(3.0)
    assert dict(m.read().joules) == {"a": 7.0, "b": 7.0}
    m.advance({"b": 1.0})
    assert dict(m.read().joules) == {"a": 9.0, "b": 10.0}
    assert m.reads == 3


def test_readings_use_monotonic_time() -> None:
    m = FakeMeter()
    before = time.monotonic()
    t = m.read().time_s
    after = time.monotonic()
    assert before <= t <= after


def test_estimated_and_approximate_flags() -> None:
    m = FakeMeter(
        ("x", "y"),
        estimated=True,
        scope="device",
        update_period_s=0.1,
        name="cc",
        approximate_domains=("y",),
    )
    r = m.read()
    assert r.estimated
    assert r.approximate_domains == frozenset({"y"})
    d = m.describe()
    assert d["name"] == "cc" and d["scope"] == "device" and d["estimated"] is True
    assert d["domains"] == ["x", "y"] and d["update_period_s"] == 0.1


def test_fail_on_read_after_n() -> None:
    m = FakeMeter()
    m.fail_on_read(after=2)
    m.read()
    m.read()
    with pytest.raises(MeterReadError, match="injected"):
        m.read()
    with pytest.raises(MeterReadError):
        m.read()
    assert m.reads == 2
    m.recover()
    m.read()
    assert m.reads == 3


def test_fail_on_read_custom_exception() -> None:
    m = FakeMeter()
    m.fail_on_read(exc=OSError("boom"))
    with pytest.raises(OSError, match="boom"):
        m.read()


def test_go_backwards() -> None:
    m = FakeMeter()
    m.advance(10.0)
    first = m.read().joules["fake:0"]
    m.go_backwards(4.0)
    assert m.read().joules["fake:0"] == first - 4.0


def test_stall_holds_counters_until_resume() -> None:
    m = FakeMeter(joules_per_read=1.0)
    assert m.read().joules["fake:0"] == 1.0
    m.stall()
    m.advance(5.0)
    assert m.read().joules["fake:0"] == 1.0
    assert m.read().joules["fake:0"] == 1.0
    m.resume()
    assert m.counters["fake:0"] == 6.0
    assert m.read().joules["fake:0"] == 7.0


def test_close_is_idempotent_and_blocks_reads() -> None:
    m = FakeMeter()
    with m:
        m.read()
    assert m.closed
    m.close()
    with pytest.raises(MeterReadError, match="closed"):
        m.read()


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"domains": ()}, "domains"),
        ({"domains": "gpu:0"}, "domains"),
        ({"domains": ("a", "a")}, "domains"),
        ({"joules_per_read": -1.0}, "joules_per_read"),
        ({"joules_per_read": float("nan")}, "joules_per_read"),
        ({"update_period_s": -0.5}, "update_period_s"),
        ({"scope": "cluster"}, "scope"),
        ({"approximate_domains": ("zzz",)}, "approximate_domains"),
    ],
)
def test_bad_construction(kwargs: dict[str, object], word: str) -> None:
    with pytest.raises(ConfigurationError, match=word):
        FakeMeter(**kwargs)  # type: ignore[arg-type]


def test_bad_script_calls() -> None:
    m = FakeMeter(("a",))
    with pytest.raises(ConfigurationError, match="unknown domain"):
        m.advance({"b": 1.0})
    with pytest.raises(ConfigurationError, match="go_backwards"):
        m.advance(-1.0)
    with pytest.raises(ConfigurationError, match="after"):
        m.fail_on_read(after=-1)


def test_thread_safe_advances() -> None:
    m = FakeMeter(("a", "b"))

    def work() -> None:
        for _ in range(2000):
            m.advance(0.5)
            m.read()

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.counters == {"a": 4000.0, "b": 4000.0}
    assert m.reads == 8000
