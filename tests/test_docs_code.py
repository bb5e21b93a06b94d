"""Every code block the docs mark runnable runs, as written.

The convention (``docs/architecture.md``, "Runnable code blocks"): a line ``<!-- run -->``
right before a fenced block in ``docs/*.md`` or ``README.md`` says the block runs as is. A
``python`` block runs as a script in a fresh temporary folder; a ``bash`` block may hold only
``wattwise ...`` / ``python -m wattwise ...`` commands, one a line (``#`` comments allowed),
each run in that folder. A block that imports an optional stack is skipped where it is not
installed; Keras blocks are ``keras``-marked, so tox runs them once per Keras backend.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
MARKER = "<!-- run -->"
FENCE = re.compile(r"^(`{3,}|~{3,})(\w*)[^\n]*\n(.*?)^\1[ \t]*$", re.M | re.S)
SHELL = ("bash", "sh", "shell")
# what a block imports -> the module that must be installed to run it
NEEDS = {"torch": "torch", "lightning": "lightning", "pytorch_lightning": "pytorch_lightning",
         "keras": "keras", "pandas": "pandas", "matplotlib": "matplotlib", "sklearn": "sklearn",
         "wattwise.lightning": "lightning", "wattwise.keras": "keras"}
TIMEOUT_S = 300


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{_shown(self.path)}:{self.line}"

    @property
    def needs(self) -> list[str]:
        found = re.findall(r"^\s*(?:import|from)\s+([\w.]+)", self.code, re.M)
        mods = {NEEDS[m] for name in found for m in (name, name.split(".")[0]) if m in NEEDS}
        if self.lang in SHELL and "--framework keras" in self.code:
            mods.add("keras")
        return sorted(mods)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def marked_blocks(path: Path) -> list[Block]:
    """The blocks of ``path`` marked runnable; a marker not followed by a fence is an error."""
    text = path.read_text(encoding="utf-8")
    blocks = []
    for m in re.finditer(re.escape(MARKER) + r"[ \t]*\n", text):
        fence = FENCE.match(text, m.end())
        line = text.count("\n", 0, m.end()) + 1
        if fence is None:
            raise AssertionError(f"{_shown(path)}:{line}: {MARKER} must be followed "
                                 "directly by a fenced code block")
        blocks.append(Block(path, line, fence.group(2), fence.group(3)))
    return blocks


BLOCKS = [b for path in SOURCES for b in marked_blocks(path)]


def _params() -> list[object]:
    return [pytest.param(b, id=b.id, marks=[pytest.mark.keras] if "keras" in b.needs else [])
            for b in BLOCKS]


def _env() -> dict[str, str]:
    """The environment of a block: this interpreter finds this checkout's wattwise from any
    folder (PYTHONPATH made absolute), and no display is needed for matplotlib."""
    src = str(Path(__import__("wattwise").__file__).resolve().parents[1])
    paths = [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join([src, *paths]), MPLBACKEND="Agg",
                TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="ignore")


def shell_commands(block: Block) -> list[list[str]]:
    """The commands of a shell block as argv lists for this interpreter; only wattwise."""
    commands = []
    for raw in block.code.splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        argv = shlex.split(line)
        if argv[0] == "wattwise":
            argv = argv[1:]
        elif argv[:3] in (["python", "-m", "wattwise"], ["python3", "-m", "wattwise"]):
            argv = argv[3:]
        else:
            raise AssertionError(f"{block.id}: a runnable shell block may hold only wattwise "
                                 f"commands, not {line!r}")
        commands.append([sys.executable, "-m", "wattwise", *argv])
    return commands


def _check(proc: subprocess.CompletedProcess[str], block: Block, what: str) -> None:
    assert proc.returncode == 0, (f"{block.id}: {what} failed (exit {proc.returncode}):\n"
                                  f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")


@pytest.mark.parametrize("block", _params())
def test_marked_block_runs(block: Block, tmp_path: Path) -> None:
    for module in block.needs:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{block.id} needs {module}, not installed here")
    if block.lang == "python":
        script = tmp_path / "block.py"
        script.write_text(block.code, encoding="utf-8")
        proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=TIMEOUT_S)
        _check(proc, block, "the script")
    elif block.lang in SHELL:
        for argv in shell_commands(block):
            proc = subprocess.run(argv, cwd=tmp_path, env=_env(), capture_output=True,
                                  text=True, timeout=TIMEOUT_S)
            _check(proc, block, " ".join(argv[3:]))
    else:
        pytest.fail(f"{block.id}: a runnable block must be python or bash, not {block.lang!r}")


def test_the_runnable_blocks_are_found() -> None:
    """Markers that stop matching (a changed convention, a moved page) would skip silently."""
    ids = {b.id.split(":")[0] for b in BLOCKS}
    assert {"docs/quickstart.md", "docs/tracker.md"} <= ids
    assert sum(b.lang == "python" for b in BLOCKS) >= 3


def test_a_failing_block_fails(tmp_path: Path) -> None:
    """The runner catches a block that raises, and refuses non-wattwise shell commands."""
    doc = tmp_path / "page.md"
    doc.write_text(f"text\n\n{MARKER}\n```python\nraise SystemExit(3)\n```\n\n"
                   f"{MARKER}\n```bash\nrm -rf /tmp/x   # not a wattwise command\n```\n")
    py, sh = marked_blocks(doc)
    proc = subprocess.run([sys.executable, "-c", py.code], capture_output=True, text=True,
                          timeout=60)
    with pytest.raises(AssertionError, match="exit 3"):
        _check(proc, py, "the script")
    with pytest.raises(AssertionError, match="only wattwise commands"):
        shell_commands(sh)
    doc.write_text(f"{MARKER}\n\nnot a fence\n")
    with pytest.raises(AssertionError, match="must be followed"):
        marked_blocks(doc)
