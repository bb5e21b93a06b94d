"""``wattwise probe``: which energy meters work here, why not, a short reading, the caches."""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

from wattwise.cli._common import CLIError, add_subcommand
from wattwise.console import UNKNOWN
from wattwise.meters.factory import METER_NAMES

EPILOG = """\
examples:
  wattwise probe                          # all meters, a 1 s reading of each readable one
  wattwise probe --json                   # the same as JSON
  wattwise probe --meters rapl nvml --seconds 2
  wattwise probe --rapl-root /tmp/fake-powercap --nvml-library ./libnvidia-ml.so.1
"""

_INSTALL_HINT = {
    "nvml": 'pip install "wattwise[nvidia]" (nvidia-ml-py)',
    "pyrapl": 'pip install "wattwise[rapl]" (pyRAPL)',
    "codecarbon": 'pip install "wattwise[codecarbon]"',
    "rapl": "",
}


def register(subparsers: Any) -> None:
    """Add the ``probe`` subcommand."""
    p = add_subcommand(
        subparsers,
        "probe",
        help="which energy meters can be read here, why not, and the cache hierarchy",
        description=(
            "Tries each energy meter (nvml, rapl, pyrapl, codecarbon). For each that can't "
            "be read it says why and how to fix it; each readable one is read over a short "
            "interval (watts per domain). Then prints the detected CPU cache hierarchy."
        ),
        epilog=EPILOG,
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--meters", nargs="+", metavar="NAME", default=list(METER_NAMES),
                   help=f"meters to try (default: all of {', '.join(METER_NAMES)})")
    p.add_argument("--seconds", type=float, default=1.0, metavar="S",
                   help="length of the reading, in seconds (default 1.0)")
    p.add_argument("--rapl-root", default=None, metavar="DIR",
                   help="powercap sysfs root for RAPL (default /sys/class/powercap)")
    p.add_argument("--nvml-library", default=None, metavar="FILE",
                   help="load libnvidia-ml from this file instead of the system one")
    p.add_argument("--sysfs-root", default=None, metavar="DIR",
                   help="sysfs root for CPU cache discovery (default /sys)")
    p.set_defaults(func=run)


def _split_reason(message: str) -> tuple[str, str | None]:
    """Split a MeterUnavailableError message into (why, fix) where it says 'Fix:'/'fix:'."""
    for marker in (" Fix: ", "\nFix: ", " fix: ", "\nfix: "):
        if marker in message:
            why, fix = message.split(marker, 1)
            return why.strip(), fix.strip()
    return message.strip(), None


def _open_all(args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Try to open every requested meter: (result per name, the meters that opened)."""
    from wattwise.errors import MeterError, MeterUnavailableError
    from wattwise.meters.factory import open_meter

    results: dict[str, dict[str, Any]] = {}
    opened: dict[str, Any] = {}
    for name in args.meters:
        res: dict[str, Any] = {"available": False, "reason": None, "fix": None}
        try:
            meter = open_meter(name, rapl_root=args.rapl_root or "/sys/class/powercap",
                               nvml_library_path=args.nvml_library)
        except MeterUnavailableError as e:
            res["reason"], res["fix"] = _split_reason(str(e))
        except ImportError as e:
            res["reason"] = f"a library it needs is not installed ({e})"
            res["fix"] = _INSTALL_HINT.get(name) or None
        except (MeterError, OSError, RuntimeError, ValueError) as e:
            res["reason"] = f"{type(e).__name__}: {e}"
        else:
            opened[name] = meter
            res.update(available=True, estimated=bool(meter.estimated), domains=list(meter.domains))
        results[name] = res
    return results, opened


def _difference(first: Any, second: Any) -> dict[str, Any]:
    """Interval, joules and watts per domain between two readings of one meter."""
    dt = second.time_s - first.time_s
    watts: dict[str, float | None] = {}
    for dom, j in second.joules.items():
        j0 = first.joules.get(dom)
        watts[dom] = (j - j0) / dt if (j0 is not None and dt > 0) else None
    return {
        "interval_s": dt,
        "joules": {d: second.joules[d] - first.joules.get(d, 0.0) for d in second.joules},
        "watts": watts,
        "approximate_domains": sorted(second.approximate_domains),
    }


def probe_meters(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Try every requested meter; read the readable ones over ``args.seconds`` seconds."""
    from wattwise.errors import MeterError

    results, opened = _open_all(args)
    first: dict[str, Any] = {}
    for name, meter in list(opened.items()):
        try:
            first[name] = meter.read()
        except MeterError as e:
            results[name].update(available=False, reason=f"opened, but reading failed: {e}")
            meter.close()
            del opened[name]
    if opened:
        time.sleep(max(0.0, args.seconds))  # one interval for every meter
    for name, meter in opened.items():
        try:
            results[name].update(_difference(first[name], meter.read()))
        except MeterError as e:
            results[name].update(available=False, reason=f"opened, but reading failed: {e}")
        finally:
            meter.close()
    return results


def probe_caches(args: argparse.Namespace) -> dict[str, Any]:
    """The detected CPU cache hierarchy (:func:`wattwise.hardware.cpu_hierarchy`), or why not."""
    from wattwise.hardware import cpu_hierarchy

    try:
        hier = cpu_hierarchy(args.sysfs_root) if args.sysfs_root else cpu_hierarchy()
    except Exception as e:  # noqa: BLE001 - probe reports, never crashes
        return {"available": False, "reason": f"{type(e).__name__}: {e}"}
    return {"available": True, "hierarchy": hier.to_json(), "text": hier.describe()}


def _format_meter(name: str, res: dict[str, Any]) -> list[str]:
    if not res["available"]:
        lines = [f"  {name:<11} not available: {res['reason']}"]
        return lines + ([f"      fix: {res['fix']}"] if res.get("fix") else [])
    kind = "ESTIMATE (not a hardware counter)" if res.get("estimated") else "measured"
    lines = [f"  {name:<11} readable   {kind}"]
    watts = res.get("watts") or {}
    for dom, w in watts.items():
        approx = " (approx: power x time)" if dom in res.get("approximate_domains", ()) else ""
        wtxt = UNKNOWN if w is None or not math.isfinite(w) else f"{w:.2f} W"
        lines.append(f"      {dom:<18} {wtxt} over {res['interval_s']:.2f} s{approx}")
    return lines + ([] if watts else ["      (no domains)"])


def format_probe(result: dict[str, Any]) -> str:
    """Human-readable text of a probe result."""
    lines = ["Energy meters"]
    for name, res in result["meters"].items():
        lines += _format_meter(name, res)
    readable = [n for n, r in result["meters"].items() if r["available"]]
    counters = [n for n in readable if not result["meters"][n].get("estimated")]
    if counters:
        lines.append(f"  -> wattwise will measure with: {', '.join(counters)}")
    elif readable:
        lines.append(
            "  -> no hardware energy counter is readable: wattwise will report ESTIMATES "
            f"({', '.join(readable)})"
        )
    else:
        lines.append("  -> no meter is readable: energy will be unknown")
    caches = result["caches"]
    lines += ["", "CPU cache hierarchy"]
    if caches.get("available"):
        lines += ["  " + line for line in str(caches["text"]).splitlines()]
    else:
        lines.append(f"  not detected: {caches.get('reason')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    unknown = [m for m in args.meters if m not in METER_NAMES]
    if unknown:
        raise CLIError(
            f"--meters: unknown meter {unknown[0]!r}; choose from {', '.join(METER_NAMES)}"
        )
    if not math.isfinite(args.seconds) or not 0 < args.seconds <= 60:
        raise CLIError(f"--seconds {args.seconds!r}: expected a number of seconds in (0, 60]")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = {"meters": probe_meters(args), "caches": probe_caches(args)}
    result["interval_s"] = args.seconds
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(format_probe(result))
    return 0
