"""``wattwise run -- COMMAND``: a real child process, a fake powercap tree (the child moves its
counter), the summary and the exit code passed through."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_one_line_error, run_cli

from wattwise.testing import fake_rapl_zone

SRC = str(Path(__file__).resolve().parents[2] / "src")
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def zone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "powercap"
    z = fake_rapl_zone(root / "intel-rapl:0", "package-0", 1_000_000)
    monkeypatch.setenv("WATTWISE_RAPL_ROOT", str(root))
    monkeypatch.setenv("PYTHONPATH", SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return z


def _child(zone: Path, code: int) -> list[str]:
    """A child that moves the fake package counter by 4 J and exits with ``code``."""
    return [sys.executable, "-c",
            "import sys, time\nfrom wattwise.testing import set_rapl_energy\n"
            f"time.sleep(0.05); set_rapl_energy({str(zone)!r}, 5_000_000)\n"
            f"print('child ran'); sys.exit({code})"]


@pytest.mark.parametrize("code", [0, 3])
def test_exit_code_and_summary(zone: Path, tmp_path: Path, code: int,
                               capfd: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run.json"
    result = run_cli(["run", "--meters", "rapl", "--summary", str(out), "--run-name", "tiny",
                      "--", *_child(zone, code)])
    assert result.code == code
    assert "child ran" in capfd.readouterr().out  # the child wrote to our stdout
    summary = json.loads(out.read_text())
    assert summary["run_name"] == "tiny"
    assert summary["totals"]["run"]["joules"] == pytest.approx(4.0)
    assert summary["totals"]["run"]["joules_by_domain"] == {"cpu:package-0": pytest.approx(4.0)}
    assert summary["metadata"]["command"][0] == sys.executable
    if code == 0:
        assert summary["status"] == "completed" and summary["error"] is None
    else:
        assert summary["status"] == "failed" and "exited with code 3" in summary["error"]
    assert "MEASURED" in result.err and f"exit code {code}" in result.err


def test_auto_meters_and_the_default_summary_path(zone: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run_cli(["run", "--quiet", "--", *_child(zone, 0)])
    assert result.code == 0, result.err
    [path] = (tmp_path / "wattwise_runs").glob("run-*.json")
    summary = json.loads(path.read_text())
    assert summary["totals"]["run"]["joules_by_domain"]["cpu:package-0"] == pytest.approx(4.0)
    assert "joules" not in result.err  # --quiet: no table


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_is_forwarded_and_the_exit_code_is_128_plus_it(
        zone: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """The child asks its parent (wattwise, not on a terminal) to stop; wattwise passes the
    signal on to the child, which dies of it (Python re-raises an uncaught SIGINT)."""
    out = tmp_path / "term.json"
    child = (f"import os, signal, time\nos.kill(os.getppid(), signal.{sig.name})\n"
             "time.sleep(60)\n")
    proc = subprocess.run([sys.executable, "-m", "wattwise", "run", "--meters", "rapl",
                           "--summary", str(out), "--", sys.executable, "-c", child],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ),
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 128 + sig, proc.stderr
    summary = json.loads(out.read_text())
    assert summary["status"] == "interrupted" and sig.name in summary["error"]


def test_the_plain_loop_example_under_wattwise_run(zone: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "cmd.json"
    result = run_cli(["run", "--meters", "rapl", "--summary", str(out), "--", sys.executable,
                      str(EXAMPLES / "plain_loop.py"), "--epochs", "1"])
    assert result.code == 0, result.err
    assert json.loads(out.read_text())["status"] == "completed"
    inner = json.loads((tmp_path / "plain_loop_energy.json").read_text())  # the example's own
    assert inner["epochs_completed"] == 1


@pytest.mark.parametrize(("argv", "needle"), [
    (["run"], "no command given"),
    (["run", "--"], "no command given"),
    (["run", "--bogus", "--", "true"], "unrecognized arguments"),
    (["run", "--meters", "nope", "--", "true"], "unknown meter 'nope'"),
    (["run", "--interval", "0", "--", "true"], "--interval"),
])
def test_bad_input_is_one_line_and_exit_2(argv: list[str], needle: str) -> None:
    result = run_cli(argv)
    if needle == "unrecognized arguments":
        assert result.code == 2 and needle in result.err and "Traceback" not in result.err
    else:
        assert_one_line_error(result, "run", needle)


def test_a_missing_command_is_127(tmp_path: Path) -> None:
    result = run_cli(["run", "--summary", str(tmp_path / "x.json"), "--",
                      "wattwise-no-such-command-here"])
    assert result.code == 127 and "was not found" in result.err
    assert not (tmp_path / "x.json").exists()
