"""Cost of one ``Meter.read()`` per meter, in microseconds (median of many reads).

Also times the raw underlying call (``os.pread`` of every RAPL ``energy_uj`` file, the pynvml
energy call of every GPU) so that our own overhead = meter read - raw call.

Meters: RAPL on a fake sysfs tree (and the real /sys/class/powercap if readable), NVML on the
fake NVML library from tests/meters/fake_nvml (compiled here with gcc; and the real driver if
present), and ``wattwise.testing.FakeMeter``.

With codecarbon installed, a second table compares the estimate path: ``CodeCarbonMeter``
against codecarbon's ``OfflineEmissionsTracker`` driven by hand (``start_task`` at open,
``stop_task`` + ``start_task`` per read), each in a fresh interpreter: import, open, the first
read and the median read.

Run by hand (not part of the test suite)::

    .venv/bin/python benchmarks/meter_read.py [--reads 20000]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FAKE_NVML_SRC = REPO / "tests" / "meters" / "fake_nvml" / "fake_nvml.c"


def median_us(fn: Callable[[], object], reads: int) -> float:
    for _ in range(min(1000, reads)):  # warm up
        fn()
    clock = time.perf_counter_ns
    samples = []
    for _ in range(reads):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    t_empty = []
    for _ in range(reads):  # cost of the timing itself
        t0 = clock()
        t_empty.append(clock() - t0)
    return (statistics.median(samples) - statistics.median(t_empty)) / 1000.0


def bench_rapl(
    root: Path, label: str, reads: int, rows: list[tuple[str, float, float | None]]
) -> None:
    from wattwise.errors import MeterUnavailableError
    from wattwise.meters.rapl import RaplMeter

    try:
        meter = RaplMeter(root, poll_interval_s=3600.0)
    except MeterUnavailableError as e:
        print(f"# {label}: unavailable ({str(e)[:120]}...)", file=sys.stderr)
        return
    with meter:
        fds = [z.fd for z in meter._zones]

        def raw() -> None:
            for fd in fds:
                int(os.pread(fd, 32, 0))

        rows.append(
            (f"{label} ({len(fds)} zones)", median_us(meter.read, reads), median_us(raw, reads))
        )


def bench_nvml(
    lib: Path | None, label: str, reads: int, rows: list[tuple[str, float, float | None]]
) -> None:
    from wattwise.errors import MeterUnavailableError
    from wattwise.meters.nvml import NvmlMeter

    try:
        meter = NvmlMeter(library_path=lib)
    except MeterUnavailableError as e:
        print(f"# {label}: unavailable ({str(e)[:120]}...)", file=sys.stderr)
        return
    with meter:
        import pynvml

        handles = [b.handle for b in meter._boards if not b.approximate]
        get = pynvml.nvmlDeviceGetTotalEnergyConsumption

        def raw() -> None:
            for h in handles:
                get(h)

        rows.append(
            (f"{label} ({len(handles)} GPU)", median_us(meter.read, reads), median_us(raw, reads))
        )


_CC_SNIPPET = r"""
import json, statistics, sys, time, warnings
warnings.simplefilter("ignore")
import psutil  # already imported by any training stack; not part of the meter's cost
which, reads = sys.argv[1], int(sys.argv[2])
ti = time.perf_counter()
if which == "wattwise":
    from wattwise.meters.codecarbon import CodeCarbonMeter
    t0 = time.perf_counter()
    m = CodeCarbonMeter()
    read = m.read
else:
    from codecarbon import OfflineEmissionsTracker
    t0 = time.perf_counter()
    tr = OfflineEmissionsTracker(measure_power_secs=1, country_iso_code="FRA",
                                 save_to_file=False, log_level="error", allow_multiple_runs=True)
    tr.start_task()
    def read():
        data = tr.stop_task()
        tr.start_task()
        return data
t1 = time.perf_counter()
read()
t2 = time.perf_counter()
samples = []
for _ in range(reads):
    a = time.perf_counter(); read(); samples.append(time.perf_counter() - a)
print(json.dumps({"import_ms": (t0 - ti) * 1e3, "open_ms": (t1 - t0) * 1e3, "first_read_ms": (t2 - t1) * 1e3,
                  "read_us": statistics.median(samples) * 1e6}))
"""


def bench_codecarbon(reads: int) -> list[str]:
    """Markdown rows: the estimate path, wattwise's meter vs codecarbon's tracker by hand."""
    import importlib.util
    import json

    if importlib.util.find_spec("codecarbon") is None:
        return []
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = []
    for which in ("wattwise", "codecarbon"):
        r = subprocess.run(
            [sys.executable, "-c", _CC_SNIPPET, which, str(reads)],
            env=env, capture_output=True, text=True, check=True,
        )
        d = json.loads(r.stdout.strip().splitlines()[-1])
        label = "CodeCarbonMeter" if which == "wattwise" else "OfflineEmissionsTracker by hand"
        out.append(
            f"| {label} | {d['import_ms']:.0f} | {d['open_ms']:.1f} | {d['first_read_ms']:.1f} | {d['read_us']:.0f} |"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=20000, help="reads per meter (default 20000)")
    ap.add_argument(
        "--estimate-reads", type=int, default=200,
        help="reads of the codecarbon estimate meters (default 200; 0 skips them)",
    )
    args = ap.parse_args()
    rows: list[tuple[str, float, float | None]] = []
    with tempfile.TemporaryDirectory(prefix="wattwise-bench-") as tmp_s:
        tmp = Path(tmp_s)
        root = tmp / "powercap"
        for rel, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0/intel-rapl:0:0", "dram")):
            z = root / rel
            z.mkdir(parents=True)
            (z / "name").write_text(name + "\n")
            (z / "energy_uj").write_text("123456789\n")
            (z / "max_energy_range_uj").write_text("262143328850\n")
        bench_rapl(root, "RaplMeter, fake sysfs tree (tmp files)", args.reads, rows)
        if Path("/sys/class/powercap/intel-rapl:0").exists():
            bench_rapl(Path("/sys/class/powercap"), "RaplMeter, real powercap", args.reads, rows)

        gcc = shutil.which("gcc") or shutil.which("cc")
        if gcc:
            lib = tmp / "libfake-nvml.so"
            subprocess.run(
                [gcc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(FAKE_NVML_SRC)], check=True
            )
            state = tmp / "state.txt"
            state.write_text("count=1\ndev0.energy_mj=1000\n")
            os.environ["FAKE_NVML_STATE"] = str(state)
            bench_nvml(lib, "NvmlMeter, fake NVML library", args.reads, rows)
        if Path("/dev/nvidiactl").exists():
            bench_nvml(None, "NvmlMeter, real driver", args.reads, rows)

        from wattwise.testing import FakeMeter

        fake = FakeMeter()
        rows.append(("FakeMeter", median_us(fake.read, args.reads), None))

    print(
        f"# {platform.node()} {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, {args.reads} reads per meter, median, µs"
    )
    print("| meter | read() µs | raw call µs | our overhead µs |")
    print("|---|---:|---:|---:|")
    for label, read_us, raw_us in rows:
        raw_s = f"{raw_us:.2f}" if raw_us is not None else "-"
        over = f"{read_us - raw_us:.2f}" if raw_us is not None else "-"
        print(f"| {label} | {read_us:.2f} | {raw_s} | {over} |")
    if args.estimate_reads > 0:
        cc_rows = bench_codecarbon(args.estimate_reads)
        if cc_rows:
            print("\n# codecarbon estimate path, fresh interpreter each (ms, µs)")
            print("| meter | import ms | open ms | first read ms | read() µs |")
            print("|---|---:|---:|---:|---:|")
            print("\n".join(cc_rows))


if __name__ == "__main__":
    main()
