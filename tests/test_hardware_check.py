"""benchmarks/hardware_check.py end to end, against the fake NVML library and a fake powercap tree.

The fake NVML library (tests/meters/fake_nvml/fake_nvml.c, compiled here with cc) reads its
state from the file named by $FAKE_NVML_STATE; a thread of this test rewrites that file and the
powercap tree's ``energy_uj`` files every 10 ms, moving each counter at a constant power, and a
fake ``nvidia-smi`` on PATH prints the same power. So the script's comparisons are computed
against known numbers: counter joules over the load = power x seconds.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "hardware_check.py"
FAKE_NVML_SRC = REPO / "tests" / "meters" / "fake_nvml" / "fake_nvml.c"
GPU_WATTS = (150.0, 90.0)  # fake GPU 0 and 1
PACKAGE_WATTS = 40.0
DRAM_WATTS = 5.0
RUN_TIMEOUT_S = 240

FAKE_SMI = """\
#!{python}
# A fake nvidia-smi: '-i <uuid> --query-gpu=timestamp,power.draw ... -lms 100' prints power
# lines every 100 ms; anything else fails as with no GPU (codecarbon then uses no NVML).
import datetime, os, sys, time
if "-i" not in sys.argv or "-lms" not in sys.argv:
    print("No devices were found")
    sys.exit(6)
uuid = sys.argv[sys.argv.index("-i") + 1]
watts = os.environ["FAKE_SMI_WATTS"].split(",")[int(uuid.rsplit("-", 1)[1])]
while True:
    stamp = datetime.datetime.now().strftime("%Y/%m/%d %H:%M:%S.%f")[:-3]
    print(f"{{stamp}}, {{float(watts):.2f}}", flush=True)
    time.sleep(0.1)
"""


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("hardware_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["hardware_check"] = module
    spec.loader.exec_module(module)
    return module


def hc_installed(module: str) -> bool:
    """A real package, not a namespace folder such as tests/keras on sys.path."""
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.origin is not None


@pytest.fixture(scope="module")
def fake_nvml_lib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake NVML library, compiled as tests/meters/conftest.py does."""
    pytest.importorskip("pynvml", reason="nvidia-ml-py (pynvml) is not installed")
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc or cc) to build the fake NVML library "
                    "tests/meters/fake_nvml/fake_nvml.c")
    lib = tmp_path_factory.mktemp("fake_nvml") / "libfake-nvml-A.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", '-DFAKE_VARIANT="A"', "-o", str(lib),
                    str(FAKE_NVML_SRC)], check=True, capture_output=True)
    return lib


class FakeHardware:
    """Fake NVML state, a powercap tree and nvidia-smi, whose counters move at fixed watts."""

    def __init__(self, root: Path) -> None:
        self.state = root / "fake_nvml_state.txt"
        self.powercap = root / "powercap"
        self.package = self.powercap / "intel-rapl:0"
        self.dram = self.package / "intel-rapl:0:0"
        for zone, name in ((self.package, "package-0"), (self.dram, "dram")):
            zone.mkdir(parents=True)
            (zone / "name").write_text(name + "\n")
            (zone / "energy_uj").write_text(f"{0:020d}\n")
            (zone / "max_energy_range_uj").write_text("262143328850\n")
        self.bin = root / "bin"
        self.bin.mkdir()
        smi = self.bin / "nvidia-smi"
        smi.write_text(FAKE_SMI.format(python=sys.executable))
        smi.chmod(0o755)
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._write(0.0)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _write(self, t: float) -> None:
        lines = [f"count={len(GPU_WATTS)}", "driver=555.42-fakeA"]
        for i, w in enumerate(GPU_WATTS):
            lines += [f"dev{i}.energy_mj={int(1_000_000 + w * t * 1000)}",
                      f"dev{i}.power_mw={int(w * 1000)}"]
        tmp = self.state.with_suffix(".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.state)  # the fake library re-reads a file that changed
        for zone, w in ((self.package, PACKAGE_WATTS), (self.dram, DRAM_WATTS)):
            fd = os.open(zone / "energy_uj", os.O_WRONLY)  # in place: the meter holds it open
            try:
                os.pwrite(fd, f"{int(w * t * 1e6):020d}\n".encode(), 0)
            finally:
                os.close(fd)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self._write(time.monotonic() - self._t0)

    def __enter__(self) -> FakeHardware:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env.update(
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")])),
            FAKE_NVML_STATE=str(self.state),
            FAKE_SMI_WATTS=",".join(str(w) for w in GPU_WATTS),
            PATH=os.pathsep.join([str(self.bin), env.get("PATH", "")]),
            PYTHONUNBUFFERED="1",
        )
        return env


@pytest.fixture
def hardware(tmp_path: Path) -> Iterator[FakeHardware]:
    with FakeHardware(tmp_path / "fake") as hw:
        yield hw


def run_script(hw: FakeHardware, out: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args], env=hw.env(), cwd=out.parent,
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-5000:]
    assert "Traceback" not in text, text[-5000:]
    doc = json.loads((out / "hardware-check.json").read_text())
    return proc, doc


def fake_args(lib: Path, hw: FakeHardware) -> list[str]:
    return ["--nvml-library", str(lib), "--rapl-root", str(hw.powercap), "--quick",
            "--load-seconds", "1"]


def by_check(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["check"]: row for row in doc["checks"]}


def test_fake_run_without_fits(fake_nvml_lib: Path, hardware: FakeHardware, tmp_path: Path) -> None:
    out = tmp_path / "hw"
    proc, doc = run_script(hardware, out, *fake_args(fake_nvml_lib, hardware), "--skip-fits")
    md = (out / "hardware-check.md").read_text()
    assert "FAKE hardware run (fake NVML library / fake powercap tree)" in md
    assert doc["label"] == "FAKE hardware run (fake NVML library / fake powercap tree)"
    assert doc["fake"] is True and doc["complete"] is True
    rows = by_check(doc)
    expected = {"environment", "cpu-load/rapl", "cpu-vs-pyrapl", "cpu-vs-codecarbon",
                "fit/lightning", "fit/keras", "fit/ddp"}
    for name in ("nvml", "rapl", "pyrapl", "codecarbon"):
        expected.add(f"probe/{name}")
    for name in ("nvml", "rapl"):
        expected |= {f"update-period/{name}", f"read-cost/{name}"}
    for gpu in ("gpu:0", "gpu:1"):
        expected |= {f"gpu-load/{gpu}", f"gpu-vs-power/{gpu}", f"gpu-vs-smi/{gpu}"}
    assert expected <= set(rows), sorted(expected - set(rows))
    failed = {k: r["reason"] for k, r in rows.items() if r["verdict"] == "failed"}
    assert not failed
    for row in doc["checks"]:
        assert row["verdict"] in ("ok", "suspicious", "skipped")
        assert f"| {row['check']} |" in md
        assert row["verdict"] == "ok" or row["reason"], row  # a verdict other than ok says why

    env = doc["environment"]
    assert env["gpu_models"] == ["Fake GPU A", "Fake GPU A"]
    assert env["driver_version"] == "555.42-fakeA"
    assert str(fake_nvml_lib) in env["fake_inputs"] and "| GPU model(s) | Fake GPU A" in md
    assert rows["probe/nvml"]["verdict"] == rows["probe/rapl"]["verdict"] == "ok"
    assert "cpu:package-0, cpu:dram-0" in rows["probe/rapl"]["result"]

    # the fake counters move every 10 ms: measured, and within NVML's declared 100 ms
    period = rows["update-period/nvml"]["data"]["period_s"]
    assert period is not None and 0.005 <= period <= 0.1
    assert rows["update-period/nvml"]["verdict"] == "ok"
    assert rows["update-period/rapl"]["data"]["period_s"] is not None
    for name in ("nvml", "rapl"):
        cost = rows[f"read-cost/{name}"]["data"]
        assert cost["reads"] >= 100 and 0 < cost["median_us"] < 10_000

    for i, watts in enumerate(GPU_WATTS):
        load = rows[f"gpu-load/gpu:{i}"]
        assert load["verdict"] == "ok" and "no CUDA device" in load["reason"]
        assert load["data"]["counter_watts"] == pytest.approx(watts, rel=0.2)
        for check, samples in ((f"gpu-vs-power/gpu:{i}", 20), (f"gpu-vs-smi/gpu:{i}", 5)):
            row = rows[check]  # computed, not skipped: same power, so a ratio near 1
            assert row["verdict"] in ("ok", "suspicious"), row
            assert row["data"]["ratio"] == pytest.approx(1.0, abs=0.2), row
            assert row["data"]["samples"] >= samples, row
            assert row["data"]["reference_joules"] == pytest.approx(watts * 1.0, rel=0.2)

    cpu = rows["cpu-load/rapl"]
    assert cpu["verdict"] in ("ok", "suspicious")  # the fake's power ignores the load
    assert cpu["data"]["watts"]["cpu:package-0"] == pytest.approx(PACKAGE_WATTS, rel=0.25)
    assert cpu["data"]["watts"]["cpu:dram-0"] == pytest.approx(DRAM_WATTS, rel=0.25)
    if rows["probe/pyrapl"]["verdict"] == "skipped":  # pyRAPL reads only /sys/class/powercap
        assert rows["cpu-vs-pyrapl"]["verdict"] == "skipped"
    for check in ("fit/lightning", "fit/keras", "fit/ddp"):
        assert rows[check]["verdict"] == "skipped" and rows[check]["reason"] == "--skip-fits"
    assert "wrote" in proc.stderr


def test_fake_run_with_fits(fake_nvml_lib: Path, hardware: FakeHardware, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    if not hc_installed("lightning") and not hc_installed("pytorch_lightning"):
        pytest.skip("no Lightning package installed")
    out = tmp_path / "hw"
    # --ddp-cpu 2: the DDP check on 2 CPU processes, rank r measuring fake NVML board r
    _, doc = run_script(hardware, out, *fake_args(fake_nvml_lib, hardware), "--ddp-cpu", "2")
    rows = by_check(doc)
    assert not [r for r in doc["checks"] if r["verdict"] == "failed"], doc["checks"]
    lit = rows["fit/lightning"]
    assert lit["verdict"] == "ok", lit
    train = lit["data"]["train"]
    assert train["samples"] == 256 * 2 and train["joules_per_sample"] > 0
    assert lit["data"]["meters"] == ["nvml", "rapl"] and lit["data"]["device"] == "cpu"
    # every fake counter moves at a fixed power: J/sample = watts x seconds / samples
    total_w = sum(GPU_WATTS) + PACKAGE_WATTS + DRAM_WATTS
    # the fake counters move in 10 ms ticks from a thread of this process and the train window
    # lasts a few tens of ms: allow 3 ticks (and their scheduling delays) either way
    assert train["joules"] == pytest.approx(total_w * train["seconds"], rel=0.3,
                                            abs=total_w * 0.03)
    assert lit["data"]["run_joules"] <= lit["data"]["counter_joules_around_fit"] * 1.02 + 1e-3
    summary = json.loads(Path(lit["data"]["summary_path"]).read_text())
    assert summary["status"] == "completed"
    keras = rows["fit/keras"]
    if not hc_installed("keras"):
        assert keras["verdict"] == "skipped" and keras["reason"] == "keras is not installed"
    else:
        assert keras["verdict"] == "ok", keras
    ddp = rows["fit/ddp"]
    assert ddp["verdict"] == "ok", ddp
    ranks = ddp["data"]["ranks"]
    assert [list(r["domains"]) for r in ranks] == [["gpu:0"], ["gpu:1"]]  # one board per rank
    for r in ranks:  # each rank measured its own board, within what NVML moved meanwhile
        assert r["status"] == "completed" and r["run_joules"] > 0
        assert r["run_joules"] <= ddp["data"]["parent_nvml_joules"][f"gpu:{r['rank']}"]
    assert ddp["data"]["sum_last_epoch_joules"] == pytest.approx(
        ddp["data"]["logged_last_epoch_joules"], rel=0.01)
    assert ddp["data"]["sum_last_epoch_samples"] == 1024
    assert ranks[0]["run_joules"] > ranks[1]["run_joules"]  # 150 W vs 90 W, the same time


def test_ddp_needs_two_gpus(tmp_path: Path) -> None:
    hc = _load_script()
    if hc._cuda_count(hc._torch()) >= 2:
        pytest.skip("this machine has 2 or more CUDA GPUs")
    args = hc.parse_args(["--out", str(tmp_path / "hw"), "--quick"])
    report = hc.Report(tmp_path / "hw", False, args)
    ctx = hc.Context(args, hc.Settings.from_args(args), report)
    out = report.run("fit/ddp", "DDP", hc.fit_ddp, ctx)
    assert out.verdict == "skipped" and "needs 2 or more CUDA GPUs" in out.reason


def test_missing_fakes_fail_rows_not_the_script(hardware: FakeHardware, tmp_path: Path) -> None:
    """Meters asked for by flag that cannot open are failed rows; the outputs still come."""
    out = tmp_path / "hw"
    _, doc = run_script(hardware, out, "--nvml-library", str(tmp_path / "missing.so"),
                        "--rapl-root", str(tmp_path / "no-powercap"), "--quick", "--skip-fits")
    rows = by_check(doc)
    assert doc["label"].startswith("FAKE hardware run")
    for name in ("nvml", "rapl"):
        assert rows[f"probe/{name}"]["verdict"] == "failed"
        assert "asked for by flag" in rows[f"probe/{name}"]["reason"]
    assert "cannot load it" in rows["probe/nvml"]["reason"]
    assert rows["gpu-load"]["verdict"] == "skipped" and "NVML not opened" in rows["gpu-load"]["reason"]
    assert rows["cpu-load/rapl"]["verdict"] == "skipped"
    assert (out / "hardware-check.md").read_text().count("| failed:") >= 2


def test_time_limit_writes_partial_outputs(fake_nvml_lib: Path, hardware: FakeHardware,
                                           tmp_path: Path) -> None:
    out = tmp_path / "hw"
    _, doc = run_script(hardware, out, *fake_args(fake_nvml_lib, hardware), "--load-seconds",
                        "30", "--time-limit", "6")
    assert doc["complete"] is False
    last = doc["checks"][-1]
    assert last["check"] == "time-limit" and last["verdict"] == "failed"
    assert re.search(r"stopped after 6 s during '[\w/:.-]+'", last["reason"]), last
    assert "Incomplete" in (out / "hardware-check.md").read_text()


def test_unwritable_output_exits_nonzero(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(blocker / "hw"), "--quick"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "cannot write the outputs" in proc.stderr and "Traceback" not in proc.stderr


def test_helpers() -> None:
    hc = _load_script()
    samples = [(0.0, 100.0), (1.0, 100.0), (2.0, 300.0)]
    assert hc.integrate(samples, 0.5, 1.5) == pytest.approx(100 * 0.5 + (100 + 200) / 2 * 0.5)
    assert hc.integrate(samples, -1.0, 3.0) == pytest.approx(100 + 100 + 200 + 300)  # held flat
    assert hc.integrate(samples, 5.0, 6.0) is None  # no sample inside the window
    stamp, watts = hc.parse_smi_line("2026/11/04 12:00:00.250, 612.34\n")
    assert watts == 612.34 and stamp % 1 == pytest.approx(0.25)
    assert hc.parse_smi_line("2026/11/04 12:00:00.250, [N/A]") is None
    assert hc.compare(105.0, 100.0, "x").verdict == "ok"
    assert hc.compare(120.0, 100.0, "x").verdict == "suspicious"
    assert hc.compare(1.0, None, "x").verdict == "suspicious"
    doc = {"fake": False, "complete": True, "total_s": 1.0, "environment": {},
           "counts": {"ok": 1, "suspicious": 0, "failed": 0, "skipped": 0},
           "checks": [{"check": "a|b", "what": "w", "result": "r", "verdict": "ok", "reason": ""}]}
    md = hc.render_markdown(doc)
    assert "| a\\|b | w | r | ok |" in md and "FAKE" not in md
