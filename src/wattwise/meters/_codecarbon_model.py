"""codecarbon's estimate models, reproduced without importing codecarbon (which takes ~0.1 s and,
through py-cpuinfo, a ~1 s subprocess).

What codecarbon 3.3 computes on a machine with no CPU energy counter (no readable RAPL, no
Power Gadget, no powermetrics), in ``tracking_mode="machine"``:

- **CPU model**: py-cpuinfo's ``brand_raw``. On Linux that is the first non-numeric
  ``model name`` / ``cpu`` / ``processor`` / ``uarch`` field of ``/proc/cpuinfo``
  (:func:`cpu_model_from_proc_cpuinfo`); elsewhere py-cpuinfo runs its own subprocess.
- **TDP**: the model matched in codecarbon's ``data/hardware/cpu_power.csv``
  (:func:`match_tdp_w`: the result of ``codecarbon.core.cpu.TDP``'s rapidfuzz calls); an unknown
  model gets 4 W per logical CPU; the result is multiplied by the number of CPU sockets.
  No model at all, or an Apple M-series chip: 85 W.
- **CPU power**: ``TDP x (0.1 + 0.9 x load**3)`` (:func:`cpu_power_w`), ``load`` the
  machine-wide busy fraction of CPU time since the previous sample (:func:`busy_fraction` of
  ``psutil.cpu_times()``, or of ``/proc/stat`` read directly on Linux), sampled every second.
- **RAM power**: a constant from the total RAM (:func:`ram_power_w`): 5 W per estimated DIMM on
  x86 (1.5 W on ARM), fewer watts per DIMM on big machines, at least 2 DIMMs' worth.

The tests compare each function with codecarbon's own code (``tests/meters/
test_codecarbon_model.py``); the meter is :class:`wattwise.meters.CodeCarbonMeter`.
"""

from __future__ import annotations

import bisect
import csv
import functools
import importlib.util
import math
import os
import re
from dataclasses import dataclass
from typing import Any

from wattwise._record import record

__all__ = [
    "CODECARBON_MODEL_VERSION",
    "CpuPower",
    "busy_fraction",
    "codecarbon_dir",
    "cpu_counts",
    "cpu_counts_from_proc_stat",
    "cpu_model_from_proc_cpuinfo",
    "cpu_power_w",
    "cpu_tdp_w",
    "match_tdp_w",
    "mem_total_bytes_from_proc_meminfo",
    "ram_power_w",
    "socket_count",
]

#: The codecarbon release whose models this module reproduces (checked by the tests).
CODECARBON_MODEL_VERSION = "3.3"
#: codecarbon's ``POWER_CONSTANT``: watts for a CPU it cannot name.
UNKNOWN_CPU_W = 85.0
#: codecarbon's ``DEFAULT_POWER_PER_CORE``: watts per logical CPU for a model not in its table.
W_PER_THREAD = 4.0
#: codecarbon's ``RAM_SLOT_POWER_X86``: watts per DIMM on x86.
W_PER_DIMM_X86 = 5.0
W_PER_DIMM_ARM = 1.5
_B_PER_GB = 1024**3


def codecarbon_dir() -> str | None:
    """The folder of the installed codecarbon package (found without importing it), or None."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


def cpu_model_from_proc_cpuinfo(text: str) -> str | None:
    """py-cpuinfo's ``brand_raw`` from the text of ``/proc/cpuinfo``, or None if it has none.

    The first line whose key is ``model name``, ``cpu``, ``processor`` or ``uarch`` and whose
    value is not a plain number (py-cpuinfo's ``_get_field(True, ...)``).
    """
    names = ("model name", "cpu", "processor", "uarch")
    for line in text.splitlines():
        if ":" not in line:
            continue
        left, right = line.split(":", 1)
        key, value = left.strip().lower(), right.strip()
        if key in names and value and not value.isdigit():
            return value
    return None


@dataclass(frozen=True, eq=False)
class _TdpTable:
    """codecarbon's ``cpu_power.csv``, indexed once per process for :func:`match_tdp_w`."""

    names: tuple[str, ...]
    tdps: tuple[float, ...]
    by_lower: dict[str, int]  # the first row of each lower-cased name

    @functools.cached_property
    def processed(self) -> str:
        """Every name after rapidfuzz's ``default_process``, each on a line that starts with a
        newline (built when the exact matches fail, in one pass over every name: several times
        cheaper than a pass per name)."""
        return _default_process("".join("\n" + n for n in self.names), keep="\n")

    @functools.cached_property
    def line_starts(self) -> list[int]:
        """The offset of each name's line in :attr:`processed`."""
        return [m.end() for m in re.finditer("\n", self.processed)]

    def candidates(self, tokens: frozenset[str]) -> dict[int, frozenset[str]]:
        """Row -> token set of every name whose token set contains ``tokens`` or lies within
        them (and a few more), found by two regex scans rather than a token set per name: the
        names with the rarest of ``tokens`` in them, and those made of ``tokens`` only."""
        text = self.processed
        rarest = min(sorted(tokens), key=text.count)
        words = "|".join(map(re.escape, sorted(tokens, key=len, reverse=True)))
        out: dict[int, frozenset[str]] = {}
        for m in (*re.finditer(re.escape(rarest), text),
                  *re.finditer(rf"\n *(?:(?:{words}) +)*(?:{words}) *(?=\n|$)", text)):
            row = bisect.bisect_right(self.line_starts, m.start()) - 1
            if m.group().startswith("\n"):
                row += 1
            if row not in out:
                end = text.find("\n", self.line_starts[row])
                out[row] = frozenset(text[self.line_starts[row]:len(text) if end < 0 else end]
                                     .split())
        return out


#: bytes.translate table: ASCII letters and digits lower-cased, newline kept, the rest a space
_ASCII_PROCESS = bytes(
    c if chr(c).isdigit() or c == 10 else (c | 0x20) if chr(c).isalpha() else 32
    for c in range(128)) + b" " * 128


def _default_process(text: str, keep: str = "") -> str:
    """rapidfuzz's ``utils.default_process``: every non-alphanumeric character (but a newline
    in ``keep``) a space, lower case (the surrounding spaces do not matter to the token sets)."""
    if keep not in ("", "\n"):
        raise ValueError(f"_default_process(keep={keep!r}): only '' or a newline")
    for c in set(_NON_ASCII.findall(text)):  # a few characters: str.replace is C-fast
        text = text.replace(c, c.lower() if c.isalnum() else " ")
    if not text.isascii():  # a non-ASCII lower case of a non-ASCII letter: per character
        return "".join(c if c.isalnum() or c in keep else " " for c in text).lower()
    out = text.encode("ascii").translate(_ASCII_PROCESS).decode("ascii")
    return out if keep else out.replace("\n", " ")


_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _default_tokens(text: str) -> frozenset[str]:
    """The token set ``fuzz.token_set_ratio`` sees after ``utils.default_process``."""
    return frozenset(_default_process(text).split())


@functools.lru_cache(maxsize=4)
def _tdp_table(path: str) -> _TdpTable:
    names: list[str] = []
    tdps: list[float] = []
    with open(path, encoding="utf-8", newline="") as f:
        rows = csv.reader(f)
        header = next(rows, [])
        try:
            i_name, i_tdp = header.index("Name"), header.index("TDP")
        except ValueError:
            return _TdpTable((), (), {})
        for row in rows:
            try:
                tdp = float(row[i_tdp])
            except (IndexError, ValueError):
                continue  # pandas would give NaN: never matched to a usable TDP
            names.append(row[i_name])
            tdps.append(tdp)
    by_lower: dict[str, int] = {}
    for i, name in enumerate(names):
        by_lower.setdefault(name.lower(), i)
    return _TdpTable(tuple(names), tuple(tdps), by_lower)


def match_tdp_w(model: str, table_path: str) -> float | None:
    """codecarbon's TDP for ``model`` from its ``cpu_power.csv``, in watts, or None if no match.

    The result of ``codecarbon.core.cpu.TDP._get_matching_cpu``'s rapidfuzz calls, without
    rapidfuzz (whose import alone costs ~10 ms): a case-insensitive exact match, then again
    without ``(R)``, ``CPU``, ``@ x.yzGHz``, then a unique token-set match (``token_set_ratio``
    of 100: the two token sets share a token and one contains the other). The tests check it
    against codecarbon's own function.
    """
    table = _tdp_table(table_path)
    i = _matching_cpu(model, table)
    if i is None:
        return None
    tdp = table.tdps[i]
    return tdp if tdp and not math.isnan(tdp) else None  # codecarbon: `if power:`


def _matching_cpu(model_raw: str, table: _TdpTable) -> int | None:
    """The row codecarbon matches ``model_raw`` to, or None."""
    direct = table.by_lower.get(model_raw.lower())  # extractOne(ratio, lower, cutoff 100)
    if direct is not None:
        return direct
    model_raw = model_raw.replace("(R)", "")
    start_cpu = model_raw.find(" CPU @ ")
    if start_cpu > 0:
        model_raw = model_raw[0:start_cpu]
    model_raw = model_raw.replace(" CPU", "")
    model_raw = re.sub(r" @\s*\d+\.\d+GHz", "", model_raw)
    direct = table.by_lower.get(model_raw.lower())
    if direct is not None:
        return direct
    # extract(token_set_ratio, default_process, cutoff 100), kept only when unique
    query = _default_tokens(model_raw)
    if not query:
        return None
    found: int | None = None
    for i, name in sorted(table.candidates(query).items()):
        if not query.isdisjoint(name) and (query <= name or name <= query):
            if found is not None:
                return None  # two names score 100: codecarbon takes neither
            found = i
    return found


def socket_count(sysfs_cpu: str = "/sys/devices/system/cpu") -> int:
    """CPU sockets (``lscpu``'s ``Socket(s)``, which codecarbon runs): distinct
    ``physical_package_id`` values under ``sysfs_cpu``; 1 when unreadable (codecarbon's default)."""
    try:
        entries = os.listdir(sysfs_cpu)
    except OSError:
        return 1
    packages: set[str] = set()
    for entry in entries:
        if not re.fullmatch(r"cpu\d+", entry):
            continue
        try:
            with open(os.path.join(sysfs_cpu, entry, "topology", "physical_package_id")) as f:
                packages.add(f.read().strip())
        except OSError:
            continue
    return max(1, len(packages))


@record
class CpuPower:
    """The CPU part of codecarbon's setup: its model name and the watts at full load.

    Attributes:
        model: the CPU model codecarbon reports (``"Unknown"`` when it cannot name one).
        tdp_w: the watts ``cpu_power_w`` scales, in watts (TDP x sockets).
        source: how ``tdp_w`` was found: ``"table"``, ``"per-thread default"`` or
            ``"generic constant"``.
    """

    model: str
    tdp_w: float
    source: str


def cpu_tdp_w(
    model: str | None, table_path: str, logical_cpus: int, sockets: int, *, mac_arm: bool
) -> CpuPower:
    """codecarbon's CPU setup in its fallback (CPU-load) mode.

    Args:
        model: the detected CPU model (py-cpuinfo's ``brand_raw``); None or "" when unknown.
        table_path: codecarbon's ``data/hardware/cpu_power.csv``.
        logical_cpus: ``psutil.cpu_count()``.
        sockets: :func:`socket_count`.
        mac_arm: an Apple M-series Mac (codecarbon's fast path: generic 85 W).
    """
    if mac_arm:
        return CpuPower(model or "Unknown CPU", UNKNOWN_CPU_W, "generic constant")
    if not model:
        return CpuPower("Unknown", UNKNOWN_CPU_W, "generic constant")
    tdp = match_tdp_w(model, table_path)
    if tdp is not None:
        return CpuPower(model, tdp * sockets, "table")
    return CpuPower(model, logical_cpus * W_PER_THREAD * sockets, "per-thread default")


def is_mac_arm(model: str) -> bool:
    """codecarbon's ``is_mac_arm``: an ``M1``..``M99`` token in the model name."""
    return bool(re.search(r"\bM\d{1,2}\b", model))


def cpu_power_w(tdp_w: float, busy: float) -> float:
    """codecarbon's CPU power for a machine-wide busy fraction ``busy`` (0..1), in watts."""
    return tdp_w * (0.1 + 0.9 * busy**3)


def cpu_counts(times: Any) -> tuple[float, float]:
    """(total, idle) CPU time from a ``psutil.cpu_times()`` result, as codecarbon's
    ``SystemCPULoadMeter``: total excludes guest time (already in user/nice), idle includes
    iowait."""
    return _total(times), _idle(times)


def cpu_counts_from_proc_stat(text: str) -> tuple[float, float]:
    """(total, idle) CPU time, in clock ticks, from the text of Linux's ``/proc/stat``: the
    numbers ``psutil.cpu_times()`` reads (it divides them by the tick rate, which a ratio
    cancels), summed as :func:`cpu_counts` does.

    Raises:
        ValueError: no aggregate ``cpu`` line.
    """
    for line in text.splitlines():
        if line.startswith("cpu "):
            # user nice system idle iowait irq softirq steal guest guest_nice
            v = ([float(x) for x in line.split()[1:]] + [0.0] * 10)[:10]
            return sum(v) - v[8] - v[9], v[3] + v[4]
    raise ValueError("no aggregate 'cpu' line in /proc/stat")


def busy_fraction(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Machine-wide busy fraction (0..1) between two ``(total, idle)`` CPU-time counts, as
    codecarbon's ``SystemCPULoadMeter``: busy = total - idle; 0.0 when no CPU time passed."""
    total = after[0] - before[0]
    if total <= 0:
        return 0.0
    busy = (after[0] - after[1]) - (before[0] - before[1])
    return min(max(busy / total, 0.0), 1.0)


def _total(times: Any) -> float:
    return float(sum(times)) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _idle(times: Any) -> float:
    return float(times.idle) + getattr(times, "iowait", 0.0)


def mem_total_bytes_from_proc_meminfo(text: str) -> float:
    """``MemTotal`` of Linux's ``/proc/meminfo`` in bytes (what ``psutil.virtual_memory().total``
    reads).

    Raises:
        ValueError: no ``MemTotal`` line.
    """
    for line in text.splitlines():
        if line.startswith("MemTotal:"):
            return float(line.split()[1]) * 1024
    raise ValueError("no MemTotal line in /proc/meminfo")


def ram_power_w(total_bytes: float, *, arm: bool) -> float:
    """codecarbon's RAM power for a machine with ``total_bytes`` of RAM, in watts."""
    total_gb = total_bytes / _B_PER_GB
    dimms = _dimm_count(total_gb)
    per_dimm, floor = (W_PER_DIMM_ARM, 3.0) if arm else (W_PER_DIMM_X86, 2 * W_PER_DIMM_X86)
    if dimms <= 4:
        watts = per_dimm * dimms
    elif dimms <= 8:
        watts = per_dimm * 4 + per_dimm * 0.9 * (dimms - 4)
    elif dimms <= 16:
        watts = per_dimm * 4 + per_dimm * 0.9 * 4 + per_dimm * 0.8 * (dimms - 8)
    else:
        watts = (
            per_dimm * 4 + per_dimm * 0.9 * 4 + per_dimm * 0.8 * 8
            + per_dimm * 0.7 * (dimms - 16)
        )
    return max(floor, watts)


def _dimm_count(total_gb: float) -> int:
    if total_gb <= 2:
        return 1
    if total_gb <= 16:
        return 2
    if total_gb <= 64:
        return 4
    if total_gb <= 128:
        return 8
    for dimm_gb in (128, 64, 32, 16, 8, 4):
        if dimm_gb <= total_gb / 8:
            return min(math.ceil(total_gb / dimm_gb), 32)
    return 8
