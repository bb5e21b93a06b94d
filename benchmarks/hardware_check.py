"""Counters you can trust: check wattwise's energy meters on the machine this runs on.

    PYTHONPATH=src python benchmarks/hardware_check.py --out hw-check

One script, run by hand on the machine to validate (never in CI; the test suite runs it against
the fake NVML library and a fake powercap tree). It:

* probes every meter (``nvml``, ``rapl``, ``pyrapl``, ``codecarbon``): opened, or why not;
* measures how often each counter changes (update period) and what one ``read()`` costs
  (median µs over ``--reads`` reads);
* runs a busy load per device - a matrix-product loop on each visible GPU (torch.cuda) and a
  busy loop on every CPU core - and compares the joules the counter moved with the integral of
  ``nvmlDeviceGetPowerUsage`` sampled every 20 ms, with the integral of ``nvidia-smi``'s
  ``power.draw`` (when that binary exists), and for RAPL (no power reading) reports average
  watts under load against idle;
* runs a short Lightning fit and a short Keras fit (torch backend) with wattwise's
  ``EnergyMonitor`` and reports joules per sample; with two or more GPUs a DDP fit, checking
  that the per-rank GPU joules (each rank's summary file) add up to what was logged;
* writes ``hardware-check.md`` (a Markdown table) and ``hardware-check.json`` to ``--out``:
  date, host, GPU models, driver, CUDA and torch versions, and one row per check with its
  result and verdict (``ok``, ``suspicious``, ``failed`` with the error, ``skipped`` with why).

``--nvml-library`` / ``--rapl-root`` point the meters at another NVML library or powercap
folder (the fakes the tests build); the outputs are then labelled "FAKE hardware run".

No check can crash the script: each one is wrapped, so an error is a ``failed`` row, and the
outputs are always written (a watchdog writes them at ``--time-limit`` if a check hangs). The
exit code is 0 unless the outputs could not be written. Defaults take about 1-2 minutes on a
one-GPU machine (10 s of load per GPU and for the CPU, plus the fits) and never more than
``--time-limit`` (480 s). torch, lightning, keras, pynvml, pyRAPL and codecarbon are optional.
See docs/hardware-validation.md.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FAKE_LABEL = "FAKE hardware run (fake NVML library / fake powercap tree)"
REAL_LABEL = "hardware run"
SCHEMA = "wattwise-hardware-check/1"
METERS = ("nvml", "rapl", "pyrapl", "codecarbon")
#: counter joules vs an integral of sampled power: within this relative difference is ``ok``
RATIO_TOLERANCE = 0.10
#: a meter declares its update period; measured periods up to this factor above it are ``ok``
PERIOD_TOLERANCE = 1.5
#: median read() cost above which a meter is ``suspicious``, µs (public numbers: NVML 2-7 µs a
#: GPU, RAPL 15-22 µs a zone; codecarbon's read closes and opens a task, milliseconds)
READ_COST_LIMIT_US = {"nvml": 100.0, "rapl": 100.0, "pyrapl": 1000.0, "codecarbon": 100_000.0}
SMI_QUERY = "timestamp,power.draw"
SMI_TIME_FORMAT = "%Y/%m/%d %H:%M:%S.%f"
POWER_SAMPLE_S = 0.02
DDP_TIMEOUT_S = 240.0


class Skip(Exception):  # noqa: N818 - a signal, not an error
    """Raised by a check: record the row as ``skipped`` with this reason."""


@dataclass
class Outcome:
    """What a check found: verdict, one-line result, the reason for a verdict other than ok."""

    verdict: str
    result: str
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    check: str
    what: str
    verdict: str
    result: str
    reason: str
    seconds: float
    data: dict[str, Any]


@dataclass
class Settings:
    """Durations and sizes: the defaults, or short ones with ``--quick``."""

    load_s: float
    warmup_s: float
    idle_s: float
    period_s: float
    reads: int
    fit_samples: int
    fit_epochs: int
    matmul_n: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        load_s = args.load_seconds if args.load_seconds is not None else (1.0 if args.quick else 10.0)
        if args.quick:
            return cls(load_s, 0.2, 0.5, 0.5, min(args.reads, 300), 256, 2, 1024)
        return cls(load_s, 2.0, 2.0, 2.0, args.reads, 0, 3, 8192)


# ------------------------------------------------------------------------------------------
# the report: rows, outputs, watchdog


class Report:
    """Rows and environment of the run; writes the outputs (thread-safe, at most once final)."""

    def __init__(self, out: Path, fake: bool, args: argparse.Namespace) -> None:
        self.out = out
        self.fake = fake
        self.args = args
        self.rows: list[Row] = []
        self.env: dict[str, Any] = {}
        self.current = ""
        self.started = time.monotonic()
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self.lock = threading.RLock()
        self.children: list[subprocess.Popen[Any]] = []
        self.written = False

    def run(self, check: str, what: str, fn: Callable[..., Outcome], *a: Any) -> Outcome:
        """Run one check; any exception becomes a ``failed`` row with the error."""
        self.current = check
        t0 = time.monotonic()
        try:
            with _quiet_warnings() as caught:
                out = fn(*a)
            if caught:
                out.data.setdefault("warnings", caught[:5])
        except Skip as e:
            out = Outcome("skipped", "-", str(e))
        except (Exception, SystemExit) as e:
            out = Outcome("failed", "-", f"{type(e).__name__}: {e}",
                          {"traceback": traceback.format_exc(limit=8)})
        if out.verdict not in ("ok", "suspicious", "failed", "skipped"):
            out = Outcome("failed", out.result, f"bad verdict {out.verdict!r}", out.data)
        row = Row(check, what, out.verdict, out.result, out.reason,
                  round(time.monotonic() - t0, 3), _jsonable(out.data))
        with self.lock:
            if not self.written:
                self.rows.append(row)
        why = f" ({out.reason})" if out.reason else ""
        print(f"[{out.verdict}] {check}: {out.result}{why}"[:400], file=sys.stderr, flush=True)
        return out

    # outputs ----------------------------------------------------------------------------
    def document(self, complete: bool) -> dict[str, Any]:
        counts = {v: 0 for v in ("ok", "suspicious", "failed", "skipped")}
        for r in self.rows:
            counts[r.verdict] += 1
        return {
            "schema": SCHEMA,
            "label": FAKE_LABEL if self.fake else REAL_LABEL,
            "fake": self.fake,
            "complete": complete,
            "total_s": round(time.monotonic() - self.started, 1),
            "environment": _jsonable(self.env),
            "counts": counts,
            "checks": [asdict(r) for r in self.rows],
        }

    def write(self, complete: bool) -> bool:
        """Write both outputs (atomically); False when they could not be written."""
        with self.lock:
            if self.written:
                return True
            doc = self.document(complete)
            try:
                self.out.mkdir(parents=True, exist_ok=True)
                _write_atomic(self.out / "hardware-check.json", json.dumps(doc, indent=2) + "\n")
                _write_atomic(self.out / "hardware-check.md", render_markdown(doc))
            except OSError as e:
                print(f"hardware_check: cannot write the outputs to {str(self.out)!r}: {e}",
                      file=sys.stderr)
                return False
            self.written = complete
            return True

    def spawn(self, cmd: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a child process in its own process group (killed with its children)."""
        proc: subprocess.Popen[Any] = subprocess.Popen(cmd, start_new_session=True, **kwargs)
        self.children.append(proc)
        return proc

    def reap(self, proc: subprocess.Popen[Any]) -> None:
        """Kill a child's process group and wait for it."""
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5.0)
        with contextlib.suppress(ValueError):
            self.children.remove(proc)

    def kill_children(self) -> None:
        for p in list(self.children):
            with contextlib.suppress(OSError):
                os.killpg(p.pid, signal.SIGKILL)

    def start_watchdog(self, limit_s: float) -> None:
        def watch() -> None:
            time.sleep(limit_s)
            with self.lock:
                if self.written:
                    return
                self.rows.append(Row(
                    "time-limit", "the whole run within --time-limit", "failed", "-",
                    f"stopped after {limit_s:.0f} s during {self.current!r}; later checks did "
                    "not run", 0.0, {}))
                self.kill_children()
                ok = self.write(complete=False)
            print(f"hardware_check: time limit of {limit_s:.0f} s reached; outputs written to "
                  f"{self.out}", file=sys.stderr, flush=True)
            os._exit(0 if ok else 2)

        threading.Thread(target=watch, name="hardware-check-watchdog", daemon=True).start()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types (NaN and infinities as None; unknown objects as their str)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, bool) or obj is None or isinstance(obj, (int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return str(obj)


@contextlib.contextmanager
def _quiet_warnings() -> Iterator[list[str]]:
    """Record warnings (their text goes in the row) instead of printing them."""
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter("always")
        yield caught
    seen: set[str] = set()
    for w in ws:
        text = f"{w.category.__name__}: {w.message}"
        if text not in seen and "wattwise" in text.lower() + str(w.filename):
            seen.add(text)
            caught.append(text[:300])


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    lines = ["# wattwise hardware check", ""]
    if doc["fake"]:
        lines += [f"**{FAKE_LABEL}**: the numbers below come from fakes, not from hardware "
                  f"({_cell(env.get('fake_inputs', ''))}).", ""]
    if not doc["complete"]:
        lines += ["**Incomplete**: the run stopped at its time limit (see the last row).", ""]
    lines += ["| | |", "|---|---|"]
    for key, label in (
        ("date", "date (UTC)"), ("host", "host"), ("os", "OS"), ("cpu", "CPU"),
        ("gpu_models", "GPU model(s)"), ("driver_version", "NVIDIA driver"),
        ("cuda_driver_version", "CUDA (driver)"), ("torch_cuda", "CUDA (torch build)"),
        ("torch", "torch"), ("lightning", "lightning"), ("keras", "keras"),
        ("nvidia_ml_py", "nvidia-ml-py"), ("python", "Python"), ("wattwise", "wattwise"),
        ("git_commit", "git commit"), ("nvidia_smi", "nvidia-smi"),
    ):
        value = env.get(key)
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "none"
        lines.append(f"| {label} | {_cell('unknown' if value is None else value)} |")
    c = doc["counts"]
    lines += [
        "", f"{c['ok']} ok, {c['suspicious']} suspicious, {c['failed']} failed, "
        f"{c['skipped']} skipped; {doc['total_s']} s.", "",
        "| check | what | result | verdict |", "|---|---|---|---|",
    ]
    for r in doc["checks"]:
        verdict = r["verdict"] + (f": {r['reason']}" if r["reason"] else "")
        lines.append(f"| {_cell(r['check'])} | {_cell(r['what'])} | {_cell(r['result'])} | "
                     f"{_cell(verdict)} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------
# numbers


def integrate(samples: Sequence[tuple[float, float]], t0: float, t1: float) -> float | None:
    """Joules from ``(time_s, watts)`` samples over ``[t0, t1]``: trapezoid rule, power
    interpolated linearly at the ends (held flat beyond the first and last sample); None
    without a sample inside the window."""
    pts = sorted(samples)
    times = [t for t, _ in pts]
    inside = [(t, p) for t, p in pts if t0 < t < t1]
    if not inside or t1 <= t0:
        return None

    def power_at(t: float) -> float:
        i = bisect.bisect_left(times, t)
        if i == 0:
            return pts[0][1]
        if i >= len(pts):
            return pts[-1][1]
        (ta, pa), (tb, pb) = pts[i - 1], pts[i]
        return pa if tb == ta else pa + (pb - pa) * (t - ta) / (tb - ta)

    curve = [(t0, power_at(t0)), *inside, (t1, power_at(t1))]
    return sum((tb - ta) * (pa + pb) / 2 for (ta, pa), (tb, pb) in zip(curve, curve[1:]))


def parse_smi_line(line: str) -> tuple[float, float] | None:
    """``"2026/11/04 12:00:00.123, 612.34"`` -> (POSIX time in s, watts); None for a line
    without a number (``[N/A]``, ``[Not Supported]``, a header)."""
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 2:
        return None
    try:
        stamp = dt.datetime.strptime(parts[0], SMI_TIME_FORMAT).timestamp()  # local time
        watts = float(parts[1])
    except ValueError:
        return None
    return (stamp, watts) if math.isfinite(watts) else None


def compare(counter_j: float, reference_j: float | None, ref_name: str) -> Outcome:
    """Counter joules against a reference integral: ok within :data:`RATIO_TOLERANCE`."""
    if reference_j is None:
        return Outcome("suspicious", f"counter {counter_j:.2f} J; no {ref_name} sample in the "
                       "window", f"{ref_name} gave no samples", {"counter_joules": counter_j})
    ratio = counter_j / reference_j if reference_j > 0 else None
    data = {"counter_joules": counter_j, "reference_joules": reference_j, "ratio": ratio}
    result = (f"counter {counter_j:.2f} J vs {ref_name} {reference_j:.2f} J, ratio "
              + (f"{ratio:.3f}" if ratio is not None else "undefined"))
    if ratio is None:
        return Outcome("suspicious", result, f"{ref_name} integral is {reference_j!r} J", data)
    if abs(ratio - 1) <= RATIO_TOLERANCE:
        return Outcome("ok", result, "", data)
    return Outcome("suspicious", result, f"differs by {abs(ratio - 1):.0%} "
                   f"(more than {RATIO_TOLERANCE:.0%})", data)


def median_read_us(read: Callable[[], object], reads: int, max_s: float = 5.0) -> dict[str, Any]:
    """Median and 90th percentile of one call, µs, the timer's own cost subtracted."""
    clock = time.perf_counter_ns
    for _ in range(min(50, reads)):
        read()
    samples: list[int] = []
    end = time.monotonic() + max_s
    while len(samples) < reads and time.monotonic() < end:
        t0 = clock()
        read()
        samples.append(clock() - t0)
    empty = []
    for _ in range(min(len(samples), 1000)):
        t0 = clock()
        empty.append(clock() - t0)
    base = statistics.median(empty) if empty else 0
    samples.sort()
    return {
        "reads": len(samples),
        "median_us": (statistics.median(samples) - base) / 1000.0,
        "p90_us": (samples[int(0.9 * (len(samples) - 1))] - base) / 1000.0,
    }


def poll_update_period(meter: Any, domain: str, duration_s: float) -> dict[str, Any]:
    """Read ``meter`` in a tight loop; median seconds between changes of ``domain``."""
    last = meter.read().joules.get(domain)
    changes: list[float] = []
    reads = 0
    end = time.monotonic() + duration_s
    while (now := time.monotonic()) < end:
        value = meter.read().joules.get(domain)
        reads += 1
        if value != last:
            changes.append(now)
            last = value
    gaps = [b - a for a, b in zip(changes, changes[1:])]
    return {"period_s": statistics.median(gaps) if len(changes) >= 3 else None,
            "changes": len(changes), "reads": reads}


# ------------------------------------------------------------------------------------------
# context: meters opened by the probes, shared by the later checks


class Context:
    def __init__(self, args: argparse.Namespace, settings: Settings, report: Report) -> None:
        self.args = args
        self.s = settings
        self.report = report
        self.meters: dict[str, Any] = {}
        self.why_not: dict[str, str] = {}

    @property
    def nvml_library(self) -> str | None:
        return self.args.nvml_library

    @property
    def rapl_root(self) -> str:
        return self.args.rapl_root or "/sys/class/powercap"

    def close(self) -> None:
        for m in self.meters.values():
            with contextlib.suppress(Exception):
                m.close()


def _torch() -> Any | None:
    try:
        import torch
    except Exception:
        return None
    return torch


def installed(module: str) -> bool:
    """True when ``module`` is an importable regular module (not a stray namespace folder)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return False
    return spec is not None and spec.origin is not None


def _cuda_count(torch: Any | None) -> int:
    try:
        return int(torch.cuda.device_count()) if torch is not None and torch.cuda.is_available() else 0
    except Exception:
        return 0


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run_text(cmd: list[str], timeout: float = 15.0) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def environment(ctx: Context) -> Outcome:
    env = ctx.report.env
    args = ctx.args
    env.update(
        date=ctx.report.started_at.isoformat(timespec="seconds"),
        host=platform.node(),
        os=platform.platform(),
        python=platform.python_version(),
        cpu=_cpu_model(),
        cpu_count=os.cpu_count(),
        wattwise=_wattwise_version(),
        torch=_version("torch"),
        lightning=_version("lightning") or _version("pytorch-lightning"),
        keras=_version("keras"),
        nvidia_ml_py=_version("nvidia-ml-py"),
        codecarbon=_version("codecarbon"),
        pyrapl=_version("pyRAPL"),
        git_commit=_run_text(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse",
                              "--short", "HEAD"], 5.0),
        nvidia_smi=shutil.which("nvidia-smi"),
        arguments={k: v for k, v in vars(args).items() if k != "ddp_worker"},
    )
    if ctx.report.fake:
        env["fake_inputs"] = ", ".join(
            f"{flag}={value}" for flag, value in (("--nvml-library", args.nvml_library),
                                                 ("--rapl-root", args.rapl_root)) if value)
    torch = _torch()
    n = _cuda_count(torch)
    if torch is not None:
        env["torch_cuda"] = getattr(torch.version, "cuda", None)
        env["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(n)]
    env["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env["nvidia_smi"]:
        env["nvidia_smi_gpus"] = _run_text(
            ["nvidia-smi", "--query-gpu=index,name,driver_version,power.limit",
             "--format=csv,noheader"])
    return Outcome("ok", f"{env['host']}, Python {env['python']}, torch {env['torch']}, "
                   f"{n} CUDA device(s)")


def _cpu_model() -> str | None:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or None


def _wattwise_version() -> str | None:
    try:
        import wattwise
    except Exception:
        return None
    return str(getattr(wattwise, "__version__", None))


# ------------------------------------------------------------------------------------------
# probes, update periods, read costs


def probe(ctx: Context, name: str) -> Outcome:
    from wattwise.errors import MeterUnavailableError
    from wattwise.meters.factory import open_meter

    asked = (name == "nvml" and ctx.nvml_library) or (name == "rapl" and ctx.args.rapl_root)
    torch = _torch() if name == "nvml" else None
    try:
        meter = open_meter(name, rapl_root=ctx.rapl_root, nvml_library_path=ctx.nvml_library)
    except MeterUnavailableError as e:
        ctx.why_not[name] = str(e)
        if name == "codecarbon" and ctx.nvml_library and "nvml" in ctx.meters:
            e = MeterUnavailableError(f"{e} (codecarbon calls pynvml, which holds the "
                                      "--nvml-library file now)")
        if asked:
            return Outcome("failed", "not opened", f"asked for by flag, but: {e}")
        if name == "nvml" and _cuda_count(torch):
            return Outcome("failed", "not opened",
                           f"torch sees {_cuda_count(torch)} CUDA GPU(s) but NVML did not open: {e}")
        raise Skip(f"unavailable here: {e}") from None
    ctx.meters[name] = meter
    d = meter.describe()
    data = {"describe": d}
    extra = ""
    if name == "nvml":
        devices = d.get("devices", [])
        names = [dev["name"] for dev in devices]
        ctx.report.env["gpu_models"] = names
        ctx.report.env["driver_version"] = d.get("driver_version")
        extra = f"; {', '.join(names)}; driver {d.get('driver_version')}"
        with contextlib.suppress(Exception):
            import pynvml

            v = int(pynvml.nvmlSystemGetCudaDriverVersion())
            ctx.report.env["cuda_driver_version"] = f"{v // 1000}.{v % 1000 // 10}"
        if d.get("approximate_domains"):
            extra += f"; approximate (power x time): {d['approximate_domains']}"
    label = "ESTIMATE, " if meter.estimated else ""
    return Outcome("ok", f"opened: {label}{', '.join(meter.domains)}{extra}", "", data)


def update_period(ctx: Context, name: str) -> Outcome:
    meter = ctx.meters[name]
    declared = float(meter.update_period_s)
    if name == "nvml" and hasattr(meter, "measure_update_period"):
        measured = meter.measure_update_period(ctx.s.period_s)
        data: dict[str, Any] = {"period_s": measured, "method": "NvmlMeter.measure_update_period"}
    else:
        data = poll_update_period(meter, meter.domains[0], ctx.s.period_s)
        measured = data["period_s"]
    data.update(declared_s=declared, duration_s=ctx.s.period_s)
    if measured is None:
        return Outcome("suspicious", f"changed < 3 times in {ctx.s.period_s} s",
                       "no update period measurable (an idle device whose counter did not move, "
                       "or a stuck counter)", data)
    result = f"{measured * 1000:.1f} ms (declared {declared * 1000:.1f} ms)"
    if measured > declared * PERIOD_TOLERANCE:
        return Outcome("suspicious", result, "slower than the meter declares: windows shorter "
                       "than the measured period can read 0 J", data)
    return Outcome("ok", result, "", data)


def read_cost(ctx: Context, name: str) -> Outcome:
    meter = ctx.meters[name]
    data = median_read_us(meter.read, ctx.s.reads)
    limit = READ_COST_LIMIT_US[name]
    per = len(meter.domains)
    result = (f"{data['median_us']:.2f} µs median, {data['p90_us']:.2f} µs p90 "
              f"({data['reads']} reads, {per} domain(s))")
    data.update(limit_us=limit, domains=per)
    if data["median_us"] > limit:
        return Outcome("suspicious", result, f"above {limit:.0f} µs", data)
    return Outcome("ok", result, "", data)


# ------------------------------------------------------------------------------------------
# loads


class PowerSampler:
    """A thread taking ``(monotonic s, watts)`` from ``nvmlDeviceGetPowerUsage`` every 20 ms."""

    def __init__(self, pynvml: Any, handle: Any, interval_s: float = POWER_SAMPLE_S) -> None:
        self.pynvml, self.handle, self.interval_s = pynvml, handle, interval_s
        self.samples: list[tuple[float, float]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)

    def _run(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            try:
                mw = self.pynvml.nvmlDeviceGetPowerUsage(self.handle)
            except Exception as e:
                self.error = e
                return
            self.samples.append((time.monotonic(), mw / 1000.0))
            nxt += self.interval_s
            self._stop.wait(max(0.0, nxt - time.monotonic()))

    def __enter__(self) -> PowerSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5.0)


class SmiLogger:
    """``nvidia-smi --query-gpu=timestamp,power.draw ... -lms 100`` for one GPU, in the
    background; samples placed by nvidia-smi's own timestamps (its output is block-buffered)."""

    def __init__(self, smi: str, uuid: str, report: Report) -> None:
        self.cmd = [smi, "-i", uuid, f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits",
                    "-lms", "100"]
        self.report = report
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self.offset_s = time.time() - time.monotonic()

    def __enter__(self) -> SmiLogger:
        self.proc = self.report.spawn(self.cmd, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True)
        out = self.proc.stdout
        assert out is not None
        self._reader = threading.Thread(target=lambda: self.lines.extend(out), daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.report.reap(self.proc)
        if self._reader is not None:
            self._reader.join(5.0)

    def samples(self) -> list[tuple[float, float]]:
        """(monotonic s, watts) per parsed line."""
        out = []
        for line in self.lines:
            parsed = parse_smi_line(line)
            if parsed is not None:
                out.append((parsed[0] - self.offset_s, parsed[1]))
        return out


class GpuLoad:
    """A matrix-product loop on one CUDA device, in a thread, until stopped. Entering sets up
    the device (context, cuBLAS, the matrices) before the loop starts."""

    def __init__(self, torch: Any, index: int, n: int) -> None:
        self.torch, self.index, self.n = torch, index, n
        self.products = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gpu-load-{index}", daemon=True)

    def _run(self) -> None:
        torch = self.torch
        try:
            while not self._stop.is_set():
                for _ in range(8):
                    torch.mm(self.a, self.b, out=self.c)
                torch.cuda.synchronize(self.dev)
                self.products += 8
        except BaseException as e:  # noqa: BLE001 - reported by the check
            self.error = e

    def __enter__(self) -> GpuLoad:
        torch = self.torch
        self.dev = torch.device("cuda", self.index)
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.a = torch.randn(self.n, self.n, device=self.dev, dtype=dtype)
        self.b = torch.randn(self.n, self.n, device=self.dev, dtype=dtype)
        self.c = torch.mm(self.a, self.b)
        torch.cuda.synchronize(self.dev)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30.0)
        del self.a, self.b, self.c
        with contextlib.suppress(Exception):
            self.torch.cuda.empty_cache()


class CpuLoad:
    """One busy-looping Python process per CPU core, until stopped."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> CpuLoad:
        for _ in range(os.cpu_count() or 1):
            self.procs.append(self.report.spawn([sys.executable, "-c", "while True: pass"]))
        return self

    def __exit__(self, *exc: object) -> None:
        for p in self.procs:
            self.report.reap(p)


def _window(meters: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Read every meter, wait, read again: joules per meter and domain, and the seconds."""
    before = {n: m.read() for n, m in meters.items()}
    t0 = time.monotonic()
    time.sleep(seconds)
    t1 = time.monotonic()
    after = {n: m.read() for n, m in meters.items()}
    joules = {n: {d: after[n].joules[d] - before[n].joules[d] for d in after[n].joules}
              for n in meters}
    return {"t0": t0, "t1": t1, "seconds": t1 - t0, "joules": joules}


def gpu_load(ctx: Context, dev: dict[str, Any]) -> Outcome:
    """Idle window, then the load: counter joules; power samples and nvidia-smi kept in data."""
    import pynvml

    meter = ctx.meters["nvml"]
    domain = dev["domain"]
    logical = int(domain.split(":")[1])
    handle = pynvml.nvmlDeviceGetHandleByIndex(dev["nvml_index"])
    torch = _torch()
    cuda = _cuda_count(torch)
    note = "" if logical < cuda else (
        f"no CUDA device {logical} for torch (torch sees {cuda}): counter compared over an "
        "idle window")
    smi = shutil.which("nvidia-smi")
    idle = _window({"nvml": meter}, ctx.s.idle_s)
    idle_w = idle["joules"]["nvml"][domain] / idle["seconds"]
    load = GpuLoad(torch, logical, ctx.s.matmul_n) if not note else contextlib.nullcontext()
    smi_log = SmiLogger(smi, dev["uuid"], ctx.report) if smi else contextlib.nullcontext()
    with smi_log, PowerSampler(pynvml, handle) as sampler, load:
        time.sleep(ctx.s.warmup_s)  # past the 1 s power average of newer GPUs: steady state
        products0 = getattr(load, "products", 0)
        win = _window({"nvml": meter}, ctx.s.load_s)
        products = getattr(load, "products", 0) - products0
    if isinstance(load, GpuLoad) and load.error is not None:
        raise RuntimeError(f"the matmul load on cuda:{logical} failed: {load.error!r}")
    counter_j = win["joules"]["nvml"][domain]
    watts = counter_j / win["seconds"]
    power_j = integrate(sampler.samples, win["t0"], win["t1"])
    data: dict[str, Any] = {
        "domain": domain, "uuid": dev["uuid"], "name": dev["name"], "seconds": win["seconds"],
        "counter_joules": counter_j, "counter_watts": watts, "idle_watts": idle_w,
        "power_integral_joules": power_j,
        "power_samples": sum(win["t0"] < t < win["t1"] for t, _ in sampler.samples),
        "power_error": repr(sampler.error) if sampler.error else None,
        "load": "none" if note else f"bf16/fp16 {ctx.s.matmul_n}^3 matmul loop on cuda:{logical}",
        "note": note,
    }
    if products:
        data["tflops"] = products * 2 * ctx.s.matmul_n**3 / win["seconds"] / 1e12
    if isinstance(smi_log, SmiLogger):
        smi_samples = smi_log.samples()
        data.update(
            smi_command=" ".join(smi_log.cmd),
            smi_joules=integrate(smi_samples, win["t0"], win["t1"]),
            smi_samples=sum(win["t0"] < t < win["t1"] for t, _ in smi_samples),
            smi_first_lines=smi_log.lines[:2],
        )
    result = (f"{counter_j:.2f} J in {win['seconds']:.2f} s = {watts:.1f} W (idle {idle_w:.1f} W)"
              + (f", {data['tflops']:.0f} TFLOP/s" if products else ""))
    if counter_j <= 0:
        return Outcome("suspicious", result, "the counter did not move during the window", data)
    if note:
        return Outcome("ok", result, note, data)
    if watts <= idle_w * 1.05:
        return Outcome("suspicious", result, "the load did not raise the counter's power", data)
    return Outcome("ok", result, "", data)


def gpu_vs_power(load: Outcome) -> Outcome:
    d = load.data
    if "counter_joules" not in d:
        raise Skip("the load did not run (see the gpu-load row)")
    if d.get("power_error"):
        raise Skip(f"nvmlDeviceGetPowerUsage failed: {d['power_error']}")
    out = compare(d["counter_joules"], d["power_integral_joules"],
                  f"∫ nvmlDeviceGetPowerUsage ({d['power_samples']} samples, every "
                  f"{POWER_SAMPLE_S * 1000:.0f} ms)")
    out.data["samples"] = d["power_samples"]
    return out


def gpu_vs_smi(load: Outcome) -> Outcome:
    d = load.data
    if "counter_joules" not in d:
        raise Skip("the load did not run (see the gpu-load row)")
    if "smi_command" not in d:
        raise Skip("no nvidia-smi binary on PATH")
    out = compare(d["counter_joules"], d["smi_joules"],
                  f"∫ nvidia-smi power.draw ({d['smi_samples']} samples, every 100 ms)")
    out.data.update(command=d["smi_command"], samples=d["smi_samples"],
                    first_lines=d["smi_first_lines"])
    return out


def cpu_load(ctx: Context) -> Outcome:
    """Idle window, then a busy loop on every core, read by every node-wide meter."""
    if "rapl" not in ctx.meters:
        raise Skip(f"RAPL not opened: {ctx.why_not.get('rapl', '?')[:200]}")
    meters = {n: ctx.meters[n] for n in ("rapl", "pyrapl", "codecarbon") if n in ctx.meters}
    idle = _window(meters, ctx.s.idle_s)
    with CpuLoad(ctx.report) as load:
        time.sleep(ctx.s.warmup_s)
        win = _window(meters, ctx.s.load_s)
    data: dict[str, Any] = {"seconds": win["seconds"], "processes": len(load.procs),
                            "idle_seconds": idle["seconds"], "joules": win["joules"],
                            "idle_joules": idle["joules"]}
    watts = {d: j / win["seconds"] for d, j in win["joules"]["rapl"].items()}
    idle_w = {d: j / idle["seconds"] for d, j in idle["joules"]["rapl"].items()}
    data.update(watts=watts, idle_watts=idle_w)
    pkg = {d: w for d, w in watts.items() if d.startswith("cpu:package-")}
    result = ", ".join(f"{d} {w:.1f} W (idle {idle_w[d]:.1f} W)" for d, w in watts.items())
    result += f"; {len(load.procs)} busy processes, {win['seconds']:.2f} s"
    if any(w <= 0 for w in pkg.values()):
        return Outcome("suspicious", result, "a package counter did not move under load", data)
    if any(w > 1000 for w in pkg.values()):
        return Outcome("suspicious", result, "over 1000 W for one package", data)
    if any(w <= idle_w[d] * 1.05 for d, w in pkg.items()):
        return Outcome("suspicious", result, "the load did not raise package power by 5 %", data)
    return Outcome("ok", result, "", data)


def cpu_cross_check(load: Outcome, name: str) -> Outcome:
    d = load.data
    if "joules" not in d or "rapl" not in d["joules"]:
        raise Skip("no RAPL reading of the CPU load (see the cpu-load row)")
    if name not in d["joules"]:
        raise Skip(f"{name} not opened")
    rapl_j = sum(d["joules"]["rapl"].values())
    other = d["joules"][name]
    if name == "pyrapl":  # the same sysfs counters: should agree closely
        return compare(sum(other.values()), rapl_j, "RaplMeter")
    est_j = other.get("cpu:estimated", sum(other.values()))
    ratio = est_j / rapl_j if rapl_j > 0 else None
    result = f"codecarbon ESTIMATE {est_j:.2f} J (CPU) vs RAPL {rapl_j:.2f} J"
    data = {"estimate_joules": est_j, "rapl_joules": rapl_j, "ratio": ratio}
    if ratio is not None and 0.5 <= ratio <= 2.0:
        return Outcome("ok", result + f", ratio {ratio:.2f}", "", data)
    return Outcome("suspicious", result, "the estimate is off by more than 2x (it is a TDP x "
                   "load model, not a measurement)", data)


# ------------------------------------------------------------------------------------------
# fits


def _fit_meters(ctx: Context, gpu: bool) -> tuple[list[Any], list[Any]]:
    """(meters for a fit, the ones opened here that the caller closes)."""
    from wattwise.meters import NvmlMeter

    meters: list[Any] = []
    own: list[Any] = []
    if "nvml" in ctx.meters:
        if gpu:  # the fit runs on cuda:0 only
            m = NvmlMeter(devices=[0], library_path=ctx.nvml_library)
            own.append(m)
            meters.append(m)
        else:
            meters.append(ctx.meters["nvml"])
    if "rapl" in ctx.meters:
        meters.append(ctx.meters["rapl"])
    if not meters and "codecarbon" in ctx.meters:
        meters.append(ctx.meters["codecarbon"])
    if not meters:
        raise Skip("no meter opened (see the probe rows)")
    return meters, own


def _fit_data(ctx: Context, gpu: bool) -> tuple[int, int, int, int]:
    """(samples, features, hidden, batch)."""
    if ctx.s.fit_samples:
        return ctx.s.fit_samples, 16, 32, 32
    return (65536, 256, 1024, 128) if gpu else (8192, 64, 256, 64)


def _j(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.2f}"


def _judge_fit(summary: dict[str, Any], samples_expected: int, external_j: float,
               data: dict[str, Any]) -> Outcome:
    """The run summary of a fit: completed, J/sample known, every sample counted, and no more
    joules than the counters moved around the whole ``fit`` call."""
    train = summary["totals"]["phases"].get("train") or {}
    run_j = summary["totals"]["run"]["joules"]
    train_j = train.get("joules")
    jps = train.get("joules_per_sample")
    data.update(status=summary.get("status"), estimated=summary.get("estimated"),
                train=train, run_joules=run_j, counter_joules_around_fit=external_j,
                samples_expected=samples_expected)
    est = "ESTIMATE " if summary.get("estimated") else ""
    result = (f"{est}{jps:.4g} J/sample" if jps is not None else "J/sample unknown") + (
        f"; train {_j(train_j)} J, {train.get('samples')} samples, "
        f"{train.get('seconds', 0):.2f} s; run {_j(run_j)} J; counters moved {external_j:.2f} J "
        "around the fit call")
    if summary.get("status") != "completed":
        return Outcome("failed", result, f"summary status {summary.get('status')!r}: "
                       f"{summary.get('error')}", data)
    if jps is None or not jps > 0:
        return Outcome("suspicious", result, "no positive joules per sample", data)
    if train.get("samples") != samples_expected:
        return Outcome("suspicious", result, f"counted {train.get('samples')} samples, "
                       f"expected {samples_expected}", data)
    most = max(v for v in (train_j, run_j, 0.0) if v is not None)
    if most > external_j * 1.02 + 1e-3:
        return Outcome("suspicious", result, "the tracker counted more joules than the counters "
                       "moved around the whole fit", data)
    return Outcome("ok", result, "", data)


def _total(meters: Sequence[Any]) -> float:
    return float(sum(m.read().total_joules for m in meters))


def fit_lightning(ctx: Context) -> Outcome:
    torch = _torch()
    if torch is None:
        raise Skip("torch is not installed")
    if installed("lightning"):
        import lightning.pytorch as L

        from wattwise.lightning import EnergyMonitor
    elif installed("pytorch_lightning"):
        import pytorch_lightning as L

        from wattwise.lightning.pl import EnergyMonitor
    else:
        raise Skip("neither lightning nor pytorch_lightning is installed")
    for name in ("lightning.pytorch", "pytorch_lightning", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    gpu = _cuda_count(torch) > 0
    n, feat, hidden, batch = _fit_data(ctx, gpu)
    meters, own = _fit_meters(ctx, gpu)
    try:
        class MLP(L.LightningModule):  # type: ignore[misc, name-defined]
            def __init__(self) -> None:
                super().__init__()
                self.net = torch.nn.Sequential(
                    torch.nn.Linear(feat, hidden), torch.nn.ReLU(),
                    torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 10))

            def training_step(self, b: Any, i: int) -> Any:
                x, y = b
                return torch.nn.functional.cross_entropy(self.net(x), y)

            def configure_optimizers(self) -> Any:
                return torch.optim.Adam(self.parameters(), lr=1e-3)

        g = torch.Generator().manual_seed(0)
        ds = torch.utils.data.TensorDataset(torch.randn(n, feat, generator=g),
                                            torch.randint(0, 10, (n,), generator=g))
        dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True)
        folder = ctx.report.out / "lightning"
        folder.mkdir(parents=True, exist_ok=True)
        summary_path = folder / "wattwise_summary.json"
        mon = EnergyMonitor(meters=meters, summary_path=summary_path, print_summary=False,
                            advice=False)
        trainer = L.Trainer(
            accelerator="gpu" if gpu else "cpu", devices=1, max_epochs=ctx.s.fit_epochs,
            logger=False, callbacks=[mon], enable_progress_bar=False,
            enable_model_summary=False, enable_checkpointing=False)
        before = _total(meters)
        trainer.fit(MLP(), dl)
        external = _total(meters) - before
        summary = json.loads(summary_path.read_text())
        logged = trainer.callback_metrics.get("energy/train_joules_per_sample")
        data = {"device": "cuda:0" if gpu else "cpu", "meters": [m.name for m in meters],
                "logged_last_epoch_joules_per_sample": None if logged is None else float(logged),
                "summary_path": str(summary_path), "dataset": [n, feat], "batch": batch}
        return _judge_fit(summary, n * ctx.s.fit_epochs, external, data)
    finally:
        for m in own:
            m.close()


def fit_keras(ctx: Context) -> Outcome:
    if not installed("keras"):
        raise Skip("keras is not installed")
    if _torch() is None:
        raise Skip("torch is not installed (the Keras fit uses the torch backend)")
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != "torch":
        raise Skip("keras was already imported with another backend")
    os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported
    import keras
    import numpy as np

    from wattwise.keras import EnergyMonitor

    if keras.backend.backend() != "torch":
        raise Skip(f"keras runs on the {keras.backend.backend()!r} backend, not torch")
    torch = _torch()
    gpu = _cuda_count(torch) > 0
    n, feat, hidden, batch = _fit_data(ctx, gpu)
    meters, own = _fit_meters(ctx, gpu)
    try:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, feat), dtype=np.float32)
        y = rng.integers(0, 10, n)
        model = keras.Sequential([
            keras.Input((feat,)), keras.layers.Dense(hidden, activation="relu"),
            keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(10)])
        model.compile(optimizer="adam",
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        folder = ctx.report.out / "keras"
        folder.mkdir(parents=True, exist_ok=True)
        summary_path = folder / "wattwise_summary.json"
        mon = EnergyMonitor(meters=meters, summary_path=summary_path, print_summary=False,
                            advice=False)
        before = _total(meters)
        hist = model.fit(x, y, batch_size=batch, epochs=ctx.s.fit_epochs, verbose=0,
                         callbacks=[mon])
        external = _total(meters) - before
        summary = json.loads(summary_path.read_text())
        logged = hist.history.get("energy_joules_per_sample")
        data = {"device": "cuda:0" if gpu else "cpu", "meters": [m.name for m in meters],
                "history_joules_per_sample": logged, "summary_path": str(summary_path),
                "dataset": [n, feat], "batch": batch}
        return _judge_fit(summary, n * ctx.s.fit_epochs, external, data)
    finally:
        for m in own:
            m.close()


def fit_ddp(ctx: Context) -> Outcome:
    torch = _torch()
    world = ctx.args.ddp_cpu or _cuda_count(torch)
    if world < 2:
        raise Skip(f"needs 2 or more CUDA GPUs; torch sees {world}")
    if not installed("lightning") and not installed("pytorch_lightning"):
        raise Skip("neither lightning nor pytorch_lightning is installed")
    if "nvml" not in ctx.meters:
        raise Skip("NVML not opened: no per-rank GPU joules to add up")
    folder = ctx.report.out / "ddp"
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--ddp-worker", str(folder),
           "--out", str(ctx.report.out)]
    if ctx.nvml_library:
        cmd += ["--nvml-library", ctx.nvml_library]
    if ctx.args.quick:
        cmd.append("--quick")
    if ctx.args.ddp_cpu:
        cmd += ["--ddp-cpu", str(ctx.args.ddp_cpu)]
    parent = ctx.meters["nvml"]
    before = parent.read()
    proc = ctx.report.spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=DDP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        ctx.report.reap(proc)  # the launcher and every rank it started
        output, _ = proc.communicate()
        raise RuntimeError(f"the DDP fit took over {DDP_TIMEOUT_S:.0f} s; output: "
                           f"{output[-800:]}") from None
    finally:
        ctx.report.reap(proc)  # no rank outlives the check
    after = parent.read()
    (folder / "output.txt").write_text(output)
    if proc.returncode != 0:
        raise RuntimeError(f"the DDP fit exited with {proc.returncode}: {output[-800:]}")
    return judge_ddp(folder, world, {d: after.joules[d] - before.joules[d] for d in after.joules})


def judge_ddp(folder: Path, world: int, parent_j: dict[str, float]) -> Outcome:
    """Per-rank summaries: each rank's own GPU, summing to the logged (all-reduced) joules."""
    ranks: list[dict[str, Any]] = []
    for rank in range(world):
        path = folder / ("run.json" if rank == 0 else f"run.rank{rank}.json")
        summary = json.loads(path.read_text())
        fit_epochs = [e for e in summary["epochs"] if e.get("stage") == "fit"]
        last = fit_epochs[-1]["phases"]["train"]
        ranks.append({"rank": rank, "domains": last["joules_by_domain"],
                      "last_epoch_joules": last["joules"], "last_epoch_samples": last["samples"],
                      "run_joules": summary["totals"]["run"]["joules"],
                      "status": summary["status"]})
    logged = json.loads((folder / "metrics.rank0.json").read_text())
    logged_j = logged.get("energy/train_joules")
    sum_j = sum(r["last_epoch_joules"] or 0.0 for r in ranks)
    sum_samples = sum(r["last_epoch_samples"] or 0 for r in ranks)
    data = {"ranks": ranks, "logged_last_epoch_joules": logged_j,
            "sum_last_epoch_joules": sum_j, "sum_last_epoch_samples": sum_samples,
            "logged_joules_per_sample": logged.get("energy/train_joules_per_sample"),
            "parent_nvml_joules": parent_j}
    result = (f"{world} ranks; last epoch: ranks sum {sum_j:.2f} J, logged {_j(logged_j)} J; "
              f"run totals {[round(r['run_joules'] or 0, 2) for r in ranks]} J vs parent NVML "
              f"{[round(v, 2) for v in parent_j.values()]} J")
    problems = []
    doms = [d for r in ranks for d in r["domains"]]
    if len(set(doms)) != len(doms) or len(doms) != world:
        problems.append(f"expected one distinct GPU domain per rank, got {doms}")
    if any(r["status"] != "completed" for r in ranks):
        problems.append("a rank's summary is not completed")
    if logged_j is None or not math.isclose(sum_j, logged_j, rel_tol=0.01, abs_tol=1e-6):
        problems.append("the ranks' joules do not add up to the logged joules")
    for r in ranks:
        for d in r["domains"]:
            if d in parent_j and (r["run_joules"] or 0) > parent_j[d] * 1.02 + 1e-3:
                problems.append(f"rank {r['rank']} counted more on {d} than NVML moved")
    if problems:
        return Outcome("suspicious", result, "; ".join(problems), data)
    return Outcome("ok", result, "", data)


def ddp_worker(args: argparse.Namespace) -> int:
    """One DDP fit (Lightning's launcher re-runs this command for every other rank)."""
    import torch

    if installed("lightning"):
        import lightning.pytorch as L

        from wattwise.lightning import EnergyMonitor
    else:
        import pytorch_lightning as L

        from wattwise.lightning.pl import EnergyMonitor
    from wattwise.meters import NvmlMeter

    folder = Path(args.ddp_worker)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    meter = NvmlMeter(devices=[local], library_path=args.nvml_library)
    n, feat, hidden, batch = (1024, 16, 32, 32) if args.quick else (65536, 256, 1024, 128)

    class MLP(L.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(feat, hidden), torch.nn.ReLU(),
                                           torch.nn.Linear(hidden, 10))

        def training_step(self, b: Any, i: int) -> Any:
            x, y = b
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(n, feat, generator=g),
                                        torch.randint(0, 10, (n,), generator=g))
    dl = torch.utils.data.DataLoader(ds, batch_size=batch)
    mon = EnergyMonitor(meters=[meter], summary_path=folder / "run.json", print_summary=False,
                        advice=False)
    cpu = args.ddp_cpu > 0  # the tests: CPU processes (gloo), one fake NVML board per rank
    trainer = L.Trainer(accelerator="cpu" if cpu else "gpu",
                        devices=args.ddp_cpu if cpu else torch.cuda.device_count(), strategy="ddp",
                        max_epochs=3, logger=False, callbacks=[mon], enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(MLP(), dl)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    (folder / f"metrics.rank{trainer.global_rank}.json").write_text(json.dumps(metrics))
    meter.close()
    return 0


# ------------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="Check wattwise's energy counters on this machine; writes hardware-check.md "
                    "and hardware-check.json to --out.")
    ap.add_argument("--out", default="hardware-check", help="output folder (default hardware-check)")
    ap.add_argument("--nvml-library", default=None,
                    help="an NVML library file for NvmlMeter (labels the run FAKE)")
    ap.add_argument("--rapl-root", default=None,
                    help="a powercap folder for RaplMeter (labels the run FAKE)")
    ap.add_argument("--load-seconds", type=float, default=None,
                    help="seconds of load per device (default 10; 1 with --quick)")
    ap.add_argument("--quick", action="store_true", help="short loads and tiny fits (tests)")
    ap.add_argument("--skip-fits", action="store_true", help="no Lightning/Keras/DDP fits")
    ap.add_argument("--reads", type=int, default=2000, help="reads per meter for the read cost")
    ap.add_argument("--time-limit", type=float, default=480.0,
                    help="seconds after which the outputs are written and the run stops (480)")
    ap.add_argument("--ddp-cpu", type=int, default=0, metavar="N",
                    help="for tests: run the DDP check on N CPU processes, rank r measuring "
                         "NVML device r (a fake library's boards)")
    ap.add_argument("--ddp-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.load_seconds is not None and not args.load_seconds > 0:
        ap.error(f"--load-seconds={args.load_seconds!r}: expected a positive number of seconds")
    if args.ddp_cpu < 0:
        ap.error(f"--ddp-cpu={args.ddp_cpu!r}: expected a number of processes >= 0")
    if args.reads < 1:
        ap.error(f"--reads={args.reads!r}: expected at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(args)
    fake = bool(args.nvml_library or args.rapl_root)
    report = Report(Path(args.out), fake, args)
    if not report.write(complete=False):  # fail now, not after minutes of checks
        return 2
    report.start_watchdog(args.time_limit)
    ctx = Context(args, Settings.from_args(args), report)
    complete = True
    try:
        run_checks(ctx)
    except KeyboardInterrupt:
        complete = False
        with report.lock:
            report.rows.append(Row("interrupted", "the whole run", "failed", "-",
                                   f"KeyboardInterrupt during {report.current!r}", 0.0, {}))
    finally:
        report.kill_children()
        ctx.close()
    ok = report.write(complete=complete)
    if ok:
        print((report.out / "hardware-check.md").read_text())
        print(f"wrote {report.out / 'hardware-check.md'} and {report.out / 'hardware-check.json'}",
              file=sys.stderr)
    return 0 if ok else 2


def run_checks(ctx: Context) -> None:
    r = ctx.report
    r.run("environment", "date, host, versions", environment, ctx)
    for name in METERS:
        r.run(f"probe/{name}", f"open the {name} meter", probe, ctx, name)
    for name in METERS:
        what = f"{name}: median time between counter changes"
        if name in ctx.meters:
            r.run(f"update-period/{name}", what, update_period, ctx, name)
    for name in METERS:
        if name in ctx.meters:
            r.run(f"read-cost/{name}", f"{name}: µs per read() ({ctx.s.reads} reads)",
                  read_cost, ctx, name)
    if "nvml" in ctx.meters:
        devices = ctx.meters["nvml"].describe().get("devices", [])
        for dev in devices:
            dom = dev["domain"]
            what = f"{dom} ({dev['name']}): {ctx.s.load_s:g} s matmul load, counter joules"
            load = r.run(f"gpu-load/{dom}", what, gpu_load, ctx, dev)
            r.run(f"gpu-vs-power/{dom}", f"{dom}: counter vs ∫ nvmlDeviceGetPowerUsage",
                  gpu_vs_power, load)
            r.run(f"gpu-vs-smi/{dom}", f"{dom}: counter vs ∫ nvidia-smi power.draw",
                  gpu_vs_smi, load)
    else:
        r.run("gpu-load", "GPU matmul load vs power", _skip,
              f"NVML not opened ({ctx.why_not.get('nvml', '?')[:200]})")
    cpu = r.run("cpu-load/rapl", f"CPU: {ctx.s.load_s:g} s busy loop on every core, RAPL watts",
                cpu_load, ctx)
    r.run("cpu-vs-pyrapl", "CPU load: pyRAPL joules vs RAPL", cpu_cross_check, cpu, "pyrapl")
    r.run("cpu-vs-codecarbon", "CPU load: codecarbon estimate vs RAPL", cpu_cross_check, cpu,
          "codecarbon")
    fits = (("fit/lightning", "Lightning fit, EnergyMonitor J/sample", fit_lightning),
            ("fit/keras", "Keras fit (torch backend), EnergyMonitor J/sample", fit_keras),
            ("fit/ddp", "Lightning DDP fit: per-rank GPU joules add up", fit_ddp))
    for check, what, fn in fits:
        if ctx.args.skip_fits:
            r.run(check, what, _skip, "--skip-fits")
        else:
            r.run(check, what, fn, ctx)


def _skip(reason: str) -> Outcome:
    raise Skip(reason)


if __name__ == "__main__":
    sys.exit(main())
