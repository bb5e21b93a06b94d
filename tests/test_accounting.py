"""Tests of wattwise.accounting: the Ledger fed by hand, its records, checkpoints and restores."""

from __future__ import annotations

import json
from typing import Any

import pytest

from wattwise.accounting import Acc, Ledger, RecordContext, restore_state
from wattwise.errors import ConfigurationError

GPU, CPU = "gpu:0", "cpu:package-0"


def ledger(periods: dict[str, float] | None = None, restored: Any = None,
           t0: float = 0.0) -> Ledger:
    ctx = RecordContext(periods={GPU: 0.0} if periods is None else periods)
    return Ledger(ctx, "fit", 0, t0, restored)


def batch(lg: Ledger, samples: int | None, batches: int = 1) -> None:
    """What EnergyTracker.add_batch does to the open window's sums."""
    acc = lg.current
    assert acc is not None
    if samples is None:
        acc.samples_unknown = True
    else:
        acc.samples += samples
    acc.batches += batches


def roundtrip(state: dict[str, Any]) -> dict[str, Any]:
    """A state as it comes back from a checkpoint file."""
    return json.loads(json.dumps(state))


# attribution -------------------------------------------------------------------------------
def test_feed_goes_to_the_open_window_or_other() -> None:
    """Deltas and seconds go to the innermost open window, else to other."""
    lg = ledger()
    lg.feed([(GPU, 3.0)], 1.0)  # before any window: other
    lg.open("train", 0)
    lg.feed([(GPU, 10.0)], 3.0)
    batch(lg, 4)
    rec = lg.close()
    lg.feed([(GPU, 1.0)], 3.5)  # after: other again
    assert (rec.phase, rec.epoch, rec.joules, rec.seconds, rec.samples, rec.batches) == (
        "train", 0, 10.0, 2.0, 4, 1)
    assert rec.joules_per_sample == 2.5 and rec.watts == 5.0
    assert lg.other.joules == {GPU: 4.0} and lg.other.seconds == 1.5
    assert lg.phase is None and lg.current is None


def test_nested_window_pauses_the_outer_one() -> None:
    """A validate window inside a train window takes the joules and time while it is open."""
    lg = ledger()
    lg.open("train", 0)
    lg.feed([(GPU, 5.0)], 2.0)
    lg.open("validate", 0)
    assert lg.phase == "validate"
    lg.feed([(GPU, 3.0)], 5.0)
    val = lg.close()
    assert lg.phase == "train"
    lg.feed([(GPU, 1.0)], 6.0)
    train = lg.close()
    assert (val.joules, val.seconds) == (3.0, 3.0)
    assert (train.joules, train.seconds) == (6.0, 3.0)
    assert lg.other.joules == {} and lg.other.seconds == 0.0
    totals = lg.totals()
    assert totals["train"].joules == {GPU: 6.0} and totals["validate"].joules == {GPU: 3.0}


def test_epoch_sums_several_windows_of_a_phase() -> None:
    """Two train windows of one epoch are summed (joules, seconds, samples) in its record."""
    lg = ledger()
    for start, end, joules, n in ((0.0, 2.0, 4.0, 8), (3.0, 5.0, 6.0, 12)):
        lg.feed([], start)  # the second gap (2 s -> 3 s) goes to other
        lg.open("train", 1)
        lg.feed([(GPU, joules)], end)
        batch(lg, n)
        lg.close()
    lg.open("validate", 1)
    lg.feed([(GPU, 2.0)], 6.0)
    epoch = lg.end_epoch()
    train = epoch.phases["train"]
    assert (epoch.epoch, train.joules, train.seconds, train.samples, train.batches) == (
        1, 10.0, 4.0, 20, 2)
    assert train.joules_per_sample == 0.5 and train.watts == 2.5
    assert epoch.phases["validate"].joules == 2.0
    assert (epoch.joules, epoch.seconds, epoch.complete) == (12.0, 5.0, True)
    assert lg.epochs == [epoch] and lg.epochs_completed() == 1
    assert lg.other.seconds == 1.0
    assert not lg.epoch_open


def test_single_window_record_is_reused_in_the_epoch() -> None:
    """A phase with one window in the epoch reuses the record close() returned."""
    lg = ledger()
    lg.open("train", 0)
    lg.feed([(GPU, 7.0)], 1.0)
    rec = lg.close()
    assert lg.end_epoch().phases["train"] is rec


def test_end_epoch_closes_open_windows_and_may_be_incomplete() -> None:
    """end_epoch(complete=False) closes the open windows and does not count the epoch."""
    lg = ledger()
    lg.open("train", 3)
    lg.feed([(GPU, 2.0)], 1.0)
    lg.open("validate", 3)
    lg.feed([(GPU, 1.0)], 2.0)
    rec = lg.end_epoch(complete=False)
    assert lg.phase is None and not lg.epoch_open
    assert (rec.epoch, rec.complete, rec.joules) == (3, False, 3.0)
    assert set(rec.phases) == {"train", "validate"}
    assert lg.epochs_done == 0 and lg.epochs_completed() == 0


# checkpoints -------------------------------------------------------------------------------
def mid_window_ledger() -> Ledger:
    """Epoch 0 complete (10 J); epoch 1: a train window (4 J) closed, a second one open (3 J)."""
    lg = ledger()
    lg.open("train", 0)
    lg.feed([(GPU, 10.0)], 2.0)
    batch(lg, 8, 2)
    lg.end_epoch()
    lg.feed([(GPU, 0.5)], 2.5)  # other
    lg.open("train", 1)
    lg.feed([(GPU, 4.0)], 3.5)
    batch(lg, 4)
    lg.close()
    lg.open("train", 1)
    lg.feed([(GPU, 3.0)], 5.0)
    batch(lg, 4)
    return lg


def test_state_dict_mid_window_holds_the_open_window_and_partial_epoch() -> None:
    """A mid-window state has the open window in totals and the open epoch's partial phases."""
    state = roundtrip(mid_window_ledger().state_dict())
    assert state["version"] == 2 and state["epochs"] == 1
    assert state["totals"]["train"] == {"joules": {GPU: 17.0}, "seconds": 4.5,
                                        "samples": 16, "batches": 4}
    assert state["totals"]["other"]["joules"] == {GPU: 0.5}
    assert state["open_epoch"] == {"epoch": 1, "phases": {"train": {
        "joules": {GPU: 7.0}, "seconds": 2.5, "samples": 8, "batches": 2}}}


def test_mid_epoch_resume_continues_the_epoch() -> None:
    """Restored mid-epoch: the resumed epoch = partial + new, totals = restored + new."""
    restored = restore_state(roundtrip(mid_window_ledger().state_dict()))
    lg = ledger(restored=restored, t0=100.0)
    assert lg.resume_epoch == 1 and lg.epochs_completed() == 1
    lg.open("train", 1)
    assert lg.resume_epoch is None
    lg.feed([(GPU, 5.0)], 102.0)
    batch(lg, 4)
    epoch = lg.end_epoch()
    train = epoch.phases["train"]
    assert (epoch.epoch, train.joules, train.seconds, train.samples, train.batches) == (
        1, 12.0, 4.5, 12, 3)
    assert train.joules_per_sample == 1.0
    assert lg.epochs_completed() == 2
    totals = lg.totals()
    assert totals["train"].joules == {GPU: 22.0}
    assert (totals["train"].samples, totals["train"].batches) == (20, 5)
    assert totals["other"].joules == {GPU: 0.5}
    assert lg.state_dict()["open_epoch"] is None


def test_resume_into_another_epoch_drops_the_partial_epoch() -> None:
    """When the next epoch opened is not the checkpoint's, its partial sums are not added."""
    lg = ledger(restored=restore_state(mid_window_ledger().state_dict()))
    lg.open("train", 2)
    lg.feed([(GPU, 5.0)], 1.0)
    assert lg.end_epoch().phases["train"].joules == 5.0
    assert lg.totals()["train"].joules == {GPU: 22.0}  # totals still hold the partial 7 J


def test_state_dict_before_the_resumed_epoch_reopens_keeps_the_partial_epoch() -> None:
    """Checkpointing a restored ledger before any window gives back the state it was restored from."""
    state = roundtrip(mid_window_ledger().state_dict())
    lg = ledger(restored=restore_state(state))
    assert roundtrip(lg.state_dict()) == state


def test_version_1_state_loads() -> None:
    """A version-1 state (no open_epoch) restores totals and epochs."""
    v1 = {"version": 1, "epochs": 3, "totals": {
        "train": {"joules": {GPU: 30.0}, "seconds": 6.0, "samples": 12, "batches": 3},
        "other": {"joules": {}, "seconds": 1.0, "samples": 0, "batches": 0}}}
    restored = restore_state(v1)
    assert restored["epochs"] == 3 and restored["open_epoch"] is None
    lg = ledger(restored=restored)
    assert lg.resume_epoch is None and lg.epochs_completed() == 3
    lg.open("train", 3)
    lg.feed([(GPU, 10.0)], 2.0)
    lg.end_epoch()
    state = lg.state_dict()
    assert state["version"] == 2 and state["epochs"] == 4
    assert state["totals"]["train"]["joules"] == {GPU: 40.0}
    assert state["totals"]["other"]["seconds"] == 1.0


@pytest.mark.parametrize(
    "state",
    [
        {},
        {"version": 3, "epochs": 0, "totals": {}},
        {"version": 2, "totals": {}},
        {"version": 2, "epochs": "many", "totals": {}},
        {"version": 2, "epochs": 1, "totals": {"train": {"joules": {GPU: "x"}, "seconds": 1,
                                                         "samples": 1, "batches": 1}}},
        {"version": 2, "epochs": 1, "totals": {"train": {"seconds": 1}}},
        {"version": 2, "epochs": 1, "totals": [], "open_epoch": None},
        {"version": 2, "epochs": 1, "totals": {}, "open_epoch": {"phases": {}}},
        None,
        "state",
    ],
)
def test_bad_states_raise_configuration_error(state: Any) -> None:
    """Anything not from state_dict() raises ConfigurationError naming load_state_dict."""
    with pytest.raises(ConfigurationError, match=r"load_state_dict\(state="):
        restore_state(state)


# records: unknown vs zero, samples, idle -------------------------------------------------
def test_unmoved_domain_in_a_window_shorter_than_its_period_is_unknown() -> None:
    """0 J in a window shorter than the update period is None; longer, it is a known 0 J."""
    lg = ledger({GPU: 0.1, CPU: 0.001})
    lg.open("train", 0)
    lg.feed([(GPU, 0.0), (CPU, 0.5)], 0.05)
    short = lg.close()
    assert dict(short.joules_by_domain) == {GPU: None, CPU: 0.5}
    assert short.joules == 0.5  # the known domains
    lg.open("train", 0)
    lg.feed([(GPU, 0.0), (CPU, 0.0)], 0.3)
    long = lg.close()
    assert dict(long.joules_by_domain) == {GPU: 0.0, CPU: 0.0} and long.joules == 0.0
    lg.open("validate", 0)
    lg.feed([], 0.31)
    nothing = lg.close()  # no delta at all: every domain unknown
    assert dict(nothing.joules_by_domain) == {GPU: None, CPU: None} and nothing.joules is None
    assert nothing.watts is None


def test_uncountable_samples_make_record_samples_none() -> None:
    """samples_unknown in a window gives samples None in the window, epoch and checkpoint."""
    lg = ledger()
    lg.open("train", 0)
    batch(lg, 4)
    batch(lg, None)
    lg.feed([(GPU, 8.0)], 2.0)
    rec = lg.close()
    assert rec.samples is None and rec.joules_per_sample is None
    assert rec.batches == 2 and rec.joules_per_batch == 4.0
    lg.open("train", 0)
    batch(lg, 4)
    lg.feed([(GPU, 8.0)], 3.0)
    lg.close()
    assert lg.end_epoch().phases["train"].samples is None
    state = roundtrip(lg.state_dict())
    assert state["totals"]["train"]["samples"] is None
    assert Acc.from_state(state["totals"]["train"]).samples_unknown


def test_idle_baseline_gives_active_joules() -> None:
    """Idle watts from other's growth; later records get joules minus idle power x seconds."""
    lg = ledger({GPU: 0.0, CPU: 0.0})
    lg.feed([(GPU, 1.0), (CPU, 1.0)], 1.0)
    before = lg.other.copy()
    lg.feed([(GPU, 50.0), (CPU, 20.0)], 11.0)  # a 10 s idle wait
    idle = lg.idle_baseline(before)
    assert idle == {"seconds": 10.0, "watts": 7.0, "watts_by_domain": {GPU: 5.0, CPU: 2.0}}
    assert lg.ctx.idle_measured
    lg.open("train", 0)
    lg.feed([(GPU, 100.0), (CPU, 30.0)], 16.0)
    rec = lg.close()
    assert rec.joules == 130.0 and rec.active_joules == 130.0 - 7.0 * 5.0


def test_idle_baseline_unknown_domain_leaves_active_joules_unknown() -> None:
    """A domain whose idle power is unknown makes active_joules None, not a guess."""
    lg = ledger({GPU: 0.0, CPU: 1.0})
    before = lg.other.copy()
    lg.feed([(GPU, 5.0), (CPU, 0.0)], 0.5)  # CPU did not move in less than its period
    idle = lg.idle_baseline(before)
    assert idle["watts_by_domain"] == {GPU: 10.0, CPU: None} and idle["watts"] == 10.0
    lg.open("train", 0)
    lg.feed([(GPU, 20.0), (CPU, 3.0)], 2.5)
    rec = lg.close()
    assert rec.joules == 23.0 and rec.active_joules is None


def test_records_without_idle_baseline_have_no_active_joules() -> None:
    """Without an idle measurement active_joules stays None."""
    lg = ledger()
    lg.open("train", 0)
    lg.feed([(GPU, 20.0)], 2.0)
    assert lg.close().active_joules is None


def test_carbon_intensity_gives_grams() -> None:
    """co2_g = joules x g/kWh / 3.6e6."""
    lg = ledger()
    lg.ctx.carbon_g_per_kwh = 360.0
    lg.open("train", 0)
    lg.feed([(GPU, 36_000.0)], 2.0)
    assert lg.close().co2_g == pytest.approx(3.6)
