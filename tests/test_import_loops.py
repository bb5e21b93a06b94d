"""The loop helpers (``wattwise.measure``, ``wattwise.fabric``, ``wattwise run``) import no
framework: the Fabric object is passed in, torch is imported only under DDP."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "keras", "tensorflow", "jax", "pynvml", "codecarbon", "lightning",
         "pytorch_lightning")


def test_loop_modules_are_light() -> None:
    code = (
        "import sys, json\n"
        "import wattwise, wattwise.fabric, wattwise.measuring, wattwise.cli.run\n"
        "assert callable(wattwise.measure)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
