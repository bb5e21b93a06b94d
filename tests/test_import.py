"""`import wattwise` (and its core modules) must not import any heavy stack."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = (
    "torch",
    "keras",
    "tensorflow",
    "jax",
    "pynvml",
    "codecarbon",
    "lightning",
    "pytorch_lightning",
)


def test_core_imports_are_light() -> None:
    code = (
        "import sys, json\n"
        "import wattwise, wattwise.meters, wattwise.tracker, wattwise.model\n"
        "import wattwise.testing, wattwise.summary, wattwise.console, wattwise.errors\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded == [], f"import wattwise pulled in heavy modules: {loaded}"


def test_the_check_can_fail() -> None:
    """The same probe sees a heavy module once it is imported (so the test above can fail)."""
    code = (
        "import sys, json, wattwise, hypothesis\nprint(json.dumps('hypothesis' in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) is True


def test_lazy_top_level_names_are_the_modules_objects() -> None:
    """Every name in ``wattwise.__all__`` resolves (lazily) to its module's object."""
    import importlib

    import wattwise

    for name in wattwise.__all__:
        value = getattr(wattwise, name)
        module = wattwise._LAZY.get(name)
        if module is not None:
            assert value is getattr(importlib.import_module(module), name), name
    assert set(wattwise._LAZY) <= set(dir(wattwise))
    try:
        wattwise.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as e:
        assert "no_such_name" in str(e)
    else:
        raise AssertionError("an unknown attribute did not raise")


def test_an_adapter_does_not_import_the_whole_api() -> None:
    code = ("import sys, json, wattwise.lightning, wattwise.tracker\n"
            "print(json.dumps(sorted(m for m in ('wattwise.report', 'wattwise.measuring') "
            "if m in sys.modules)))\n")
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
