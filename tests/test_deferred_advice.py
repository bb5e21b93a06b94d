"""The sizing check's model runs off the training thread; its result is recorded on it."""

from __future__ import annotations

import threading
import time
import warnings

from wattwise import EnergyTracker
from wattwise.errors import WattwiseWarning
from wattwise.run import Deferred
from wattwise.testing import FakeMeter


def test_compute_runs_on_another_thread_and_finish_on_the_training_thread() -> None:
    threads: dict[str, int] = {}
    tracker = EnergyTracker([FakeMeter()], summary_path=None)
    tracker.begin_stage("fit")

    def compute() -> dict[str, int]:
        threads["compute"] = threading.get_ident()
        time.sleep(0.2)
        return {"widths": 3}

    def finish(advice: dict[str, int]) -> None:
        threads["finish"] = threading.get_ident()
        tracker.set_advice(advice)

    t0 = time.perf_counter()
    tracker.check_advice(lambda: Deferred(compute, finish))
    assert time.perf_counter() - t0 < 0.15  # the caller did not wait for the model
    assert tracker.summary()["advice"] is None  # not yet recorded
    summary = tracker.finish()  # the stage end waits for it
    assert summary["advice"] == {"widths": 3}
    assert threads["compute"] != threading.get_ident() == threads["finish"]


def test_an_error_in_the_background_is_one_warning_and_advice_error() -> None:
    tracker = EnergyTracker([FakeMeter()], summary_path=None)
    tracker.begin_stage("fit")

    def compute() -> None:
        raise ValueError("model exploded")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tracker.check_advice(lambda: Deferred(compute, lambda _: None))
        tracker.start_window("train", 0)
        tracker.add_batch(1)
        time.sleep(0.05)
        tracker.end_epoch()  # collected here, on the training thread
        summary = tracker.finish()
    msgs = [str(w.message) for w in caught if issubclass(w.category, WattwiseWarning)]
    assert len(msgs) == 1 and "model exploded" in msgs[0]
    assert summary["advice"] is None and "model exploded" in summary["advice_error"]
    assert summary["status"] == "completed"
