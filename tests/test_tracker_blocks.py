"""``with EnergyTracker(...)``, ``with tracker.epoch()`` and ``with tracker.phase(...)``: numbering,
windows closed when the body raises, statuses, misuse."""

from __future__ import annotations

import pytest

from wattwise import EnergyTracker
from wattwise.errors import ConfigurationError, WattwiseError
from wattwise.testing import FakeMeter


def _tracker(**kw: object) -> tuple[EnergyTracker, FakeMeter]:
    meter = FakeMeter(("cpu:package-0",))
    return EnergyTracker([meter], min_window_s=0.0, **kw), meter  # type: ignore[arg-type]


def test_epochs_are_numbered_and_phases_recorded() -> None:
    tracker, meter = _tracker()
    numbers, records = [], []
    with tracker:
        for _ in range(3):
            with tracker.epoch() as epoch:
                assert tracker.current_epoch == epoch.epoch and tracker.current_phase is None
                with tracker.phase("train") as train:
                    assert tracker.current_phase == "train"
                    tracker.add_batch(10)
                    meter.advance(20.0)
                with tracker.phase("validate") as val:
                    tracker.add_batch(5)
                    meter.advance(5.0)
            numbers.append(epoch.epoch)
            records.append((train.record, val.record, epoch.record))
    assert numbers == [0, 1, 2]
    for i, (train, val, epoch) in enumerate(records):
        assert train is not None and val is not None and epoch is not None
        assert (train.epoch, val.epoch, epoch.epoch) == (i, i, i)
        assert train.joules == 20.0 and train.joules_per_sample == 2.0
        assert val.joules == 5.0 and epoch.joules == 25.0 and epoch.complete
    assert tracker.status == "completed"
    assert tracker.summary()["epochs_completed"] == 3


def test_nested_phase_pauses_the_outer_one() -> None:
    tracker, meter = _tracker()
    with tracker, tracker.epoch() as epoch:
        with tracker.phase("train") as train:
            meter.advance(3.0)
            with tracker.phase("validate") as val:
                meter.advance(7.0)
            assert tracker.current_phase == "train"
    assert train.record is not None and val.record is not None
    assert (train.record.joules, val.record.joules) == (3.0, 7.0)
    assert epoch.record is not None and epoch.record.joules == 10.0


def test_a_raising_body_closes_its_window_and_epoch_and_propagates() -> None:
    tracker, meter = _tracker()
    with tracker:
        with pytest.raises(ValueError, match="boom"), tracker.epoch() as epoch:
            with tracker.phase("train") as train:
                tracker.add_batch(4)
                meter.advance(8.0)
                raise ValueError("boom")
        assert tracker.current_phase is None and tracker.current_epoch is None
        assert train.record is not None and train.record.joules == 8.0
        assert epoch.record is not None and not epoch.record.complete
        with tracker.epoch() as after:  # the loop went on: the next number
            with tracker.phase("train"):
                meter.advance(1.0)
    assert after.epoch == 1
    assert tracker.summary()["epochs_completed"] == 1


@pytest.mark.parametrize(("error", "status"), [(RuntimeError("bad loss"), "failed"),
                                               (KeyboardInterrupt(), "interrupted")])
def test_with_tracker_records_the_failure(error: BaseException, status: str) -> None:
    tracker, meter = _tracker()
    with pytest.raises(type(error)), tracker:
        with tracker.epoch(), tracker.phase("train"):
            meter.advance(2.0)
            raise error
    summary = tracker.finish()
    assert summary["status"] == status
    assert summary["error"].startswith(type(error).__name__)
    assert summary["epochs"][0]["complete"] is False
    assert summary["totals"]["phases"]["train"]["joules"] == 2.0


def test_with_tracker_begins_a_fit_stage_on_its_own() -> None:
    tracker, _ = _tracker()
    with tracker:
        assert tracker.stage == "fit" and tracker.status == "running"
    assert tracker.status == "completed" and tracker.stage is None


def test_numbering_continues_a_restored_run() -> None:
    first, meter = _tracker()
    with first:
        for _ in range(2):
            with first.epoch(), first.phase("train"):
                meter.advance(1.0)
        state = first.state_dict()
    second, _ = _tracker()
    second.load_state_dict(state)
    with second, second.epoch() as epoch:
        with second.phase("train") as train:
            pass
    assert epoch.epoch == 2 and train.epoch == 2
    assert second.summary()["epochs_completed"] == 3


def test_a_mid_epoch_checkpoint_continues_its_epoch() -> None:
    first, meter = _tracker()
    with first, first.epoch(), first.phase("train"):
        first.add_batch(3)
        meter.advance(6.0)
        state = first.state_dict()
    second, meter2 = _tracker()
    second.load_state_dict(state)
    with second:
        with second.epoch() as epoch, second.phase("train"):
            second.add_batch(1)
            meter2.advance(2.0)
    assert epoch.epoch == 0 and epoch.record is not None
    train = epoch.record.phases["train"]
    assert (train.samples, train.joules) == (4, 8.0)  # the checkpoint's part counted once


def test_phase_outside_an_epoch_block_joins_the_open_epoch() -> None:
    tracker, meter = _tracker()
    with tracker:
        with tracker.phase("train") as a:
            meter.advance(1.0)
        with tracker.phase("validate") as b:
            meter.advance(1.0)
        assert tracker.end_epoch() is not None
        with tracker.phase("train") as c:
            pass
    assert (a.epoch, b.epoch, c.epoch) == (0, 0, 1)


def test_misuse_raises_clearly() -> None:
    tracker, _ = _tracker()
    with pytest.raises(ConfigurationError, match="phase='training'"):
        tracker.phase("training")
    with pytest.raises(WattwiseError, match="start"), tracker.epoch():
        pass
    with tracker:
        with pytest.raises(WattwiseError, match="do not nest"), tracker.epoch(), tracker.epoch():
            pass
        tracker.start_window("train", 0)
        with pytest.raises(WattwiseError, match="end_epoch"), tracker.epoch():
            pass


def test_blocks_never_break_training_in_warn_mode() -> None:
    """With on_error="warn" (the adapters), a block used wrongly is one warning, no exception."""
    from wattwise.config import TrackerConfig

    tracker = EnergyTracker(config=TrackerConfig(meters=[FakeMeter(("gpu:0",))], on_error="warn"))
    with pytest.warns(Warning, match="epoch"):
        with tracker.epoch() as epoch, tracker.phase("train") as train:
            ran = True
    assert ran and epoch.epoch is None and train.record is None
