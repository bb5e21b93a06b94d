"""Where wattwise's cost in a short fit goes, item by item (run by hand).

    PYTHONPATH=src python benchmarks/fit_costs.py [--rounds 5] [--framework lightning|keras]

Each round is a fresh process (``benchmarks/_peers_child.py``'s workload, bytecode warm) that
measures, in its own process, what end-to-end timings on a noisy machine cannot resolve:

* ``import``: importing the adapter (``wattwise.lightning`` / ``wattwise.keras``) after the
  framework, and of it the time spent defining the package's dataclasses;
* ``sizing import``: importing the sizing check's modules (``wattwise.introspect``,
  ``wattwise.sizing``, ``wattwise.calibration``), which the fit does on background threads;
* the CPU time of every wattwise background thread during one fit of the ``counters`` and
  ``auto`` configurations (``time.thread_time`` around each thread's run): the sizing check
  (``wattwise-advice``), its import (``wattwise-prefetch``), codecarbon's CPU lookup
  (``wattwise-codecarbon-setup``) and sampler. A background thread takes the GIL from the
  training thread, so on a Python-bound step its CPU time is, to first order, added to the fit.

The table gives medians over rounds, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MARK = "FIT_COSTS "

_PROBE = r"""
import dataclasses, json, sys, tempfile, threading, time
from pathlib import Path
framework, config = sys.argv[1], sys.argv[2]
sys.path.insert(0, sys.argv[3])
out = {}
if framework == "lightning":
    import torch, lightning.pytorch  # noqa: F401  the framework is imported before wattwise
else:
    import keras  # noqa: F401
defined = [0.0]
original = dataclasses._process_class
def timed(*a, **k):
    t = time.perf_counter()
    try:
        return original(*a, **k)
    finally:
        defined[0] += time.perf_counter() - t
dataclasses._process_class = timed
t = time.perf_counter()
__import__(f"wattwise.{framework}")
out["import_ms"] = (time.perf_counter() - t) * 1e3
out["import_dataclasses_ms"] = defined[0] * 1e3
if config == "import":
    defined[0] = 0.0
    t = time.perf_counter()
    import wattwise.introspect, wattwise.sizing, wattwise.calibration  # noqa: E401, F401
    out["sizing_import_ms"] = (time.perf_counter() - t) * 1e3
    out["sizing_import_dataclasses_ms"] = defined[0] * 1e3
else:
    dataclasses._process_class = original
    cpu = {}
    run = threading.Thread.run
    def counted(self):
        t0 = time.thread_time()
        try:
            run(self)
        finally:
            if self.name.startswith("wattwise"):
                cpu[self.name] = cpu.get(self.name, 0.0) + (time.thread_time() - t0) * 1e3
    threading.Thread.run = counted
    import _peers_child as child
    opts = {"framework": framework, "config": config, "epochs": 3, "batches": 200,
            "batch_size": 256}
    with tempfile.TemporaryDirectory() as d:
        res = (child.run_lightning if framework == "lightning" else child.run_keras)(opts, Path(d))
    out["fit_s"] = res["fit_s"]
    out["threads_cpu_ms"] = cpu  # threads still running at the end (pollers) are not counted
print("FIT_COSTS " + json.dumps(out))
"""


def probe(python: str, framework: str, config: str) -> dict[str, Any]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE.parent / "src"),
                                                      env.get("PYTHONPATH")]))
    env.setdefault("KERAS_BACKEND", "torch")
    proc = subprocess.run([python, "-c", _PROBE, framework, config, str(HERE)], env=env,
                          capture_output=True, text=True, timeout=600)
    for line in proc.stdout.splitlines():
        if line.startswith(MARK):
            return dict(json.loads(line[len(MARK):]))
    raise SystemExit(f"{framework} {config}: no result\n{proc.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--framework", choices=["lightning", "keras"], default="lightning")
    p.add_argument("--python", default=sys.executable)
    args = p.parse_args(argv)
    rows: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for config in ("import", "wattwise-counters", "wattwise-auto"):
            out = probe(args.python, args.framework, config)
            for key, value in out.items():
                if key == "threads_cpu_ms":
                    for name, ms in value.items():
                        rows.setdefault(f"{config}: thread {name} CPU", []).append(ms)
                elif key.endswith("_ms") and (config == "import" or not key.startswith("import")):
                    rows.setdefault(f"{config}: {key[:-3].replace('_', ' ')}", []).append(value)
    print(f"{args.framework}, {args.rounds} rounds (medians, ms)\n")
    print("| item | ms |\n|---|---:|")
    for key, values in rows.items():
        print(f"| {key.replace('import: ', '')} | {statistics.median(values):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
