"""Tests of wattwise.meterset.MeterSet: which meters are used, deltas, drops and closing."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from wattwise.config import TrackerConfig
from wattwise.errors import ConfigurationError, MeterReadError, MeterWarning
from wattwise.meters.rapl import RaplMeter
from wattwise.meterset import RAPL_ROOT_ENV, MeterSet
from wattwise.testing import FakeMeter, fake_rapl_zone, set_rapl_energy

write_zone = fake_rapl_zone
set_energy = set_rapl_energy


@pytest.fixture
def rapl_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A one-package powercap tree with a DRAM subzone, named by WATTWISE_RAPL_ROOT."""
    root = tmp_path / "powercap"
    pkg = write_zone(root / "intel-rapl:0", "package-0", 1_000_000)
    write_zone(pkg / "intel-rapl:0:0", "core", 500_000)
    write_zone(pkg / "intel-rapl:0:1", "dram", 2_000_000)
    monkeypatch.setenv(RAPL_ROOT_ENV, str(root))
    return root


def rapl_polls_alive() -> int:
    return sum(t.name == "wattwise-rapl-poll" and t.is_alive() for t in threading.enumerate())


def test_node_scope_instances_skipped_without_node_meters() -> None:
    """node_meters=False leaves node-scope instances unread and unclosed, keeps device ones."""
    node = FakeMeter(("cpu:package-0",), scope="node", name="node-fake", joules_per_read=1.0)
    dev = FakeMeter(("gpu:0",), scope="device", name="gpu-fake")
    ms = MeterSet(TrackerConfig(meters=[node, dev], node_meters=False))
    assert ms.active == [dev] and ms.excluded == []
    assert [i["name"] for i in ms.info] == ["gpu-fake"]
    assert "node-fake" in ms.unavailable
    periods = ms.first_reading()
    dev.advance(2.0)
    assert ms.deltas(periods) == [("gpu:0", 2.0)]
    ms.close()
    assert node.reads == 0 and not node.closed
    assert dev.reads == 2 and not dev.closed


def test_instances_are_never_closed() -> None:
    """close() leaves the user's meter instances open (they belong to the user)."""
    a, b = FakeMeter(("gpu:0",)), FakeMeter(("cpu:package-0",), scope="device")
    ms = MeterSet(TrackerConfig(meters=[a, b]))
    periods = ms.first_reading()
    a.advance(1.0)
    b.advance(3.0)
    assert sorted(ms.deltas(periods)) == [("cpu:package-0", 3.0), ("gpu:0", 1.0)]
    ms.close()
    assert not a.closed and not b.closed
    assert a.read().joules["gpu:0"] == 1.0


def test_meter_opened_by_name_is_read_and_closed(rapl_root: Path) -> None:
    """'rapl' opens RAPL under WATTWISE_RAPL_ROOT; close() closes it, not the instance."""
    polls_before = rapl_polls_alive()
    user = FakeMeter(("gpu:0",), scope="device")
    ms = MeterSet(TrackerConfig(meters=["rapl", user]))
    rapl = next(m for m in ms.active if m.name == "rapl")
    assert isinstance(rapl, RaplMeter)
    assert rapl.describe()["root"] == str(rapl_root)
    assert set(rapl.domains) == {"cpu:package-0", "cpu:dram-0"}
    periods = ms.first_reading()
    assert periods["cpu:package-0"] == RaplMeter.update_period_s
    set_energy(rapl_root / "intel-rapl:0", 3_500_000)  # +2.5 J
    set_energy(rapl_root / "intel-rapl:0" / "intel-rapl:0:1", 2_250_000)  # +0.25 J
    deltas = dict(ms.deltas(periods))
    assert deltas["cpu:package-0"] == pytest.approx(2.5)
    assert deltas["cpu:dram-0"] == pytest.approx(0.25)
    assert rapl_polls_alive() == polls_before + 1
    ms.close()
    with pytest.raises(MeterReadError, match="closed"):
        rapl.read()
    assert rapl_polls_alive() == polls_before
    assert not user.closed


def test_named_meter_closed_when_domains_clash(rapl_root: Path) -> None:
    """Two meters reporting one domain raise ConfigurationError; the named one is closed."""
    polls_before = rapl_polls_alive()
    clash = FakeMeter(("cpu:package-0",), name="other")
    with pytest.raises(ConfigurationError, match="'cpu:package-0'") as info:
        MeterSet(TrackerConfig(meters=["rapl", clash]))
    assert "EnergyTracker(meters=...)" in str(info.value)
    assert rapl_polls_alive() == polls_before
    assert not clash.closed


def test_two_meters_one_domain_raise() -> None:
    """Two instances reporting gpu:0 raise ConfigurationError naming the domain."""
    with pytest.raises(ConfigurationError, match="both report domain 'gpu:0'"):
        MeterSet(TrackerConfig(meters=[FakeMeter(("gpu:0",)), FakeMeter(("gpu:0", "x:1"))]))


def test_estimate_is_excluded_next_to_a_counter() -> None:
    """With a counter present an estimating meter is kept out; its joules go to excluded_joules."""
    counter = FakeMeter(("gpu:0",), name="counter")
    estimate = FakeMeter(("estimate:node",), estimated=True, name="estimator")
    ms = MeterSet(TrackerConfig(meters=[counter, estimate]))
    assert ms.active == [counter] and ms.excluded == [estimate]
    assert not ms.estimated
    assert {i["name"]: i["use"] for i in ms.info} == {"counter": "measured",
                                                       "estimator": "excluded"}
    estimate.advance(2.0)  # before the baseline: not counted
    periods = ms.first_reading()
    counter.advance(4.0)
    estimate.advance(7.0)
    assert ms.deltas(periods) == [("gpu:0", 4.0)]
    assert ms.excluded_joules is None
    estimate.advance(1.0)
    ms.close()
    assert ms.excluded_joules == {"estimate:node": 8.0}
    assert ms.kept_out
    assert not estimate.closed and not counter.closed


def test_estimate_alone_is_used() -> None:
    """Without any counter an estimating meter is the measurement (flagged estimated)."""
    estimate = FakeMeter(("estimate:node",), estimated=True)
    with pytest.warns(Warning, match="ESTIMATES"):
        ms = MeterSet(TrackerConfig(meters=[estimate]))
    assert ms.estimated and ms.active == [estimate] and ms.excluded == []
    assert ms.info[0]["use"] == "estimated"
    periods = ms.first_reading()
    estimate.advance(5.0)
    assert ms.deltas(periods) == [("estimate:node", 5.0)]
    ms.close()
    assert ms.excluded_joules is None and not ms.kept_out


def test_failing_read_drops_the_meter_and_keeps_the_rest() -> None:
    """A meter whose read raises is dropped with one warning; the others are still read."""
    bad = FakeMeter(("gpu:0",), name="bad")
    good = FakeMeter(("gpu:1",), name="good", scope="device")
    ms = MeterSet(TrackerConfig(meters=[bad, good]))
    periods = ms.first_reading()
    bad.fail_on_read()
    good.advance(2.0)
    with pytest.warns(MeterWarning, match="read failed"):
        assert ms.deltas(periods, epoch=0) == [("gpu:1", 2.0)]
    assert ms.active == [good]
    assert next(i for i in ms.info if i["name"] == "bad")["dropped"]["epoch"] == 0
