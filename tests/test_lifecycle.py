"""Tests of wattwise._lifecycle: a stage still running when the process ends gets its status.

Each test runs a small script in a fresh interpreter (the hooks are process-wide) and reads
the summary file it leaves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import wattwise

SRC = str(Path(wattwise.__file__).resolve().parents[1])

PRELUDE = """
import sys
from wattwise import EnergyTracker
from wattwise.testing import FakeMeter

def running(path):
    meter = FakeMeter()
    tracker = EnergyTracker([meter], summary_path=path)
    tracker.start()
    tracker.start_window("train", 0)
    meter.advance(5.0)
    return tracker
"""


def run_script(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    code = PRELUDE + textwrap.dedent(body).format(path=str(tmp_path / "run.json"),
                                                  other=str(tmp_path / "other.json"))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, env=env, cwd=tmp_path)


def summary(tmp_path: Path, name: str = "run.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / name).read_text())
    return data


def test_uncaught_exception_marks_the_stage_failed(tmp_path: Path) -> None:
    """An uncaught error ends the running stage as failed with the error; the traceback still prints."""
    proc = run_script(tmp_path, """
        tracker = running({path!r})
        raise ValueError("boom in training")
    """)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ValueError: boom in training" in proc.stderr
    s = summary(tmp_path)
    assert s["status"] == "failed"
    assert s["error"] == "ValueError: boom in training"
    assert s["stages"][0]["status"] == "failed"
    assert s["stages"][0]["error"] == "ValueError: boom in training"
    assert s["epochs"][0]["complete"] is False
    assert s["totals"]["run"]["joules"] == 5.0


def test_keyboard_interrupt_marks_the_stage_interrupted(tmp_path: Path) -> None:
    """An uncaught KeyboardInterrupt ends the running stage as interrupted."""
    proc = run_script(tmp_path, """
        tracker = running({path!r})
        raise KeyboardInterrupt("ctrl-c")
    """)
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in proc.stderr
    s = summary(tmp_path)
    assert s["status"] == "interrupted"
    assert s["error"] == "KeyboardInterrupt: ctrl-c"


def test_normal_exit_while_running_marks_it_interrupted(tmp_path: Path) -> None:
    """A script that ends while a stage runs (tracker local to a returned function) says interrupted."""
    proc = run_script(tmp_path, """
        def main():
            running({path!r})  # the tracker is local and never finished

        main()
        print("main returned")
    """)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "main returned"
    s = summary(tmp_path)
    assert s["status"] == "interrupted"
    assert s["error"] == "WattwiseError: the process exited while this stage was running"
    assert s["totals"]["run"]["joules"] == 5.0


def test_ended_stage_is_left_alone(tmp_path: Path) -> None:
    """A tracker whose stage ended keeps its status when a later error ends the process."""
    proc = run_script(tmp_path, """
        done = running({path!r})
        done.end_window()
        done.end_epoch()
        done.end_stage("completed")
        live = running({other!r})
        raise RuntimeError("late failure")
    """)
    assert proc.returncode == 1
    done, live = summary(tmp_path), summary(tmp_path, "other.json")
    assert (done["status"], done["error"]) == ("completed", None)
    assert done["epochs"][0]["complete"] is True
    assert (live["status"], live["error"]) == ("failed", "RuntimeError: late failure")


def test_excepthook_chains_to_the_previous_hook(tmp_path: Path) -> None:
    """The hook calls the excepthook installed before it, after recording the failure."""
    proc = run_script(tmp_path, """
        import json

        def previous(tp, value, tb):
            status = json.load(open({path!r}))["status"]
            print(f"previous hook saw {{tp.__name__}}: {{value}} with status {{status}}",
                  file=sys.stderr)
            sys.__excepthook__(tp, value, tb)

        sys.excepthook = previous
        tracker = running({path!r})
        raise OSError("disk gone")
    """)
    assert proc.returncode == 1
    assert "previous hook saw OSError: disk gone with status failed" in proc.stderr
    assert "Traceback" in proc.stderr and "OSError: disk gone" in proc.stderr
    assert summary(tmp_path)["status"] == "failed"
