"""Summary files that are safe to point anywhere: no FIFO, device or symlink replaced, the
umask's mode, one live writer per path, a bounded write volume."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from wattwise import EnergyTracker
from wattwise.errors import ConfigurationError, WattwiseWarning
from wattwise.testing import FakeMeter


def test_fifo_path_is_refused_before_training(tmp_path: Path) -> None:
    """A FIFO at summary_path would be replaced by a regular file: refused at construction."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(ConfigurationError, match=r"summary_path=.*pipe.*not a regular file"):
        EnergyTracker([FakeMeter()], summary_path=fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still a FIFO


def test_device_node_is_refused_and_left_alone() -> None:
    """/dev/null is a character device: the summary must never replace it."""
    with pytest.raises(ConfigurationError, match="/dev/null"):
        EnergyTracker([FakeMeter()], summary_path="/dev/null")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_symlink_and_folder_paths_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "real.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    with pytest.raises(ConfigurationError, match="symbolic link"):
        EnergyTracker([FakeMeter()], summary_path=link)
    with pytest.raises(ConfigurationError, match="not a regular file"):
        EnergyTracker([FakeMeter()], summary_path=tmp_path)
    assert target.read_text() == "{}"


def test_path_turned_fifo_mid_run_is_not_replaced(tmp_path: Path) -> None:
    """The check also holds at each write: a path that became a FIFO after start is kept, and
    the failure is one warning."""
    path = tmp_path / "run.json"
    t = EnergyTracker([FakeMeter()], summary_path=path)
    t.start()
    path.unlink()
    os.mkfifo(path)
    with pytest.warns(WattwiseWarning, match="cannot write"):
        t.finish()
    assert stat.S_ISFIFO(os.lstat(path).st_mode)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_file_mode_follows_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    path = tmp_path / "run.json"
    old = os.umask(umask)
    try:
        t = EnergyTracker([FakeMeter()], summary_path=path)
        t.start()
        t.finish()
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode


def test_second_live_writer_of_one_path_writes_elsewhere(tmp_path: Path) -> None:
    """Another process holds run.json: this run warns and writes run.pid<PID>.json; the other
    run's file is untouched."""
    path = tmp_path / "run.json"
    code = textwrap.dedent(f"""
        import time
        from wattwise import EnergyTracker
        from wattwise.testing import FakeMeter
        t = EnergyTracker([FakeMeter()], summary_path={str(path)!r}, run_name="first")
        t.start()
        print("ready", flush=True)
        time.sleep(30)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        t = EnergyTracker([FakeMeter()], summary_path=path, run_name="second")
        with pytest.warns(WattwiseWarning, match=r"another live run.*\.pid\d+\.json"):
            t.start()
        t.finish()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    mine = tmp_path / f"run.pid{os.getpid()}.json"
    assert json.loads(mine.read_text())["run_name"] == "second"
    assert json.loads(path.read_text())["run_name"] == "first"


def test_same_path_after_the_first_run_ended_is_reused(tmp_path: Path) -> None:
    """The lock is released when a run ends: a later run (another tracker) may write the path."""
    path = tmp_path / "run.json"
    first = EnergyTracker([FakeMeter()], summary_path=path, run_name="a")
    first.start()
    first.finish()
    second = EnergyTracker([FakeMeter()], summary_path=path, run_name="b")
    second.start()
    second.finish()
    assert json.loads(path.read_text())["run_name"] == "b"
    assert not list(tmp_path.glob(".*.lock"))  # no lock files left behind


def test_write_volume_is_bounded(tmp_path: Path) -> None:
    """600 epochs of 3 ms: the background writer coalesces to about one write a second, so the
    bytes written stay within 20 times the final file size (one write an epoch: ~300 times)."""
    path = tmp_path / "run.json"
    m = FakeMeter()
    t = EnergyTracker([m], summary_path=path)
    t.start()
    for epoch in range(600):
        t.start_window("train", epoch)
        t.add_batch(4)
        m.advance(1.0)
        time.sleep(0.003)
        t.end_epoch()
    written = t._run.file.bytes_written  # type: ignore[union-attr]  # white-box: the counter
    t.finish()
    final = path.stat().st_size
    assert json.loads(path.read_text())["epochs_completed"] == 600
    assert written <= 20 * final, (written, final)
