"""The background poll thread shared by the RAPL and NVML meters."""

from __future__ import annotations

import gc
import threading
import time

from wattwise.errors import MeterReadError
from wattwise.meters._poller import Poller


class _Owner:
    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after
        self.called = threading.Event()

    def work(self) -> None:
        self.calls += 1
        self.called.set()
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise MeterReadError("counter gone")


def _wait_dead(p: Poller, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while p.is_alive():
        assert time.monotonic() < deadline, "poll thread did not end"
        time.sleep(0.002)


def test_calls_work_until_stopped() -> None:
    owner, p = _Owner(), Poller("test-poll")
    assert not p.is_alive()
    p.start(owner.work, interval_s=0.001)
    assert p.is_alive()
    deadline = time.monotonic() + 10.0
    while owner.calls < 3:
        assert time.monotonic() < deadline, "poll thread never called work"
        time.sleep(0.002)
    p.stop()
    assert not p.is_alive() and p.stopped.is_set()
    calls = owner.calls
    time.sleep(0.02)
    assert owner.calls == calls  # no call after stop()


def test_read_error_ends_the_thread() -> None:
    owner, p = _Owner(fail_after=2), Poller("test-poll")
    p.start(owner.work, interval_s=0.001)
    _wait_dead(p)
    assert owner.calls == 2


def test_thread_holds_no_strong_reference() -> None:
    owner, p = _Owner(), Poller("test-poll")
    p.start(owner.work, interval_s=0.005)
    assert owner.called.wait(10.0)
    del owner
    gc.collect()
    _wait_dead(p)  # the owner was collected: the thread ended by itself


def test_stop_before_start_and_twice() -> None:
    p = Poller("test-poll")
    p.stop()
    p.stop()
    assert not p.is_alive()
