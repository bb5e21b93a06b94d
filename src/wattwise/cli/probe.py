"""``wattwise probe``: which energy meters work here, why not, a short reading, the caches."""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

EPILOG = """\
examples:
  wattwise probe                          # all meters, a 1 s reading of each readable one
  wattwise probe --json                   # the same as JSON
  wattwise probe --meters rapl nvml --seconds 2
  wattwise probe --rapl-root /tmp/fake-powercap --nvml-library ./libnvidia-ml.so.1
"""

METER_NAMES = ("nvml", "rapl", "pyrapl", "codecarbon")

_INSTALL_HINT = {
    "nvml": 'pip install "wattwise[nvidia]" (nvidia-ml-py)',
    "pyrapl": 'pip install "wattwise[rapl]" (pyRAPL)',
    "codecarbon": 'pip install "wattwise[codecarbon]"',
    "rapl": "",
}


def register(subparsers: Any) -> None:
    """Add the ``probe`` subcommand."""
    p = subparsers.add_parser(
        "probe",
        help="which energy meters can be read here, why not, and the cache hierarchy",
        description=(
            "Tries each energy meter (nvml, rapl, pyrapl, codecarbon). For each that can't "
            "be read it says why and how to fix it; each readable one is read over a short "
            "interval (watts per domain). Then prints the detected CPU cache hierarchy."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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


def _open(name: str, args: argparse.Namespace) -> Any:
    from wattwise import meters

    if name == "rapl":
        return meters.RaplMeter(root=args.rapl_root) if args.rapl_root else meters.RaplMeter()
    if name == "nvml":
        if args.nvml_library:
            return meters.NvmlMeter(library_path=args.nvml_library)
        return meters.NvmlMeter()
    if name == "pyrapl":
        return meters.PyRaplMeter()
    if name == "codecarbon":
        return meters.CodeCarbonMeter()
    raise AssertionError(name)


def _split_reason(message: str) -> tuple[str, str | None]:
    """Split a MeterUnavailableError message into (why, fix) where it says 'Fix:'/'fix:'."""
    for marker in (" Fix: ", "\nFix: ", " fix: ", "\nfix: "):
        if marker in message:
            why, fix = message.split(marker, 1)
            return why.strip(), fix.strip()
    return message.strip(), None


def probe_meters(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Try every requested meter; read the readable ones over ``args.seconds`` seconds."""
    from wattwise.errors import MeterError, MeterUnavailableError

    results: dict[str, dict[str, Any]] = {}
    opened: dict[str, Any] = {}
    for name in args.meters:
        res: dict[str, Any] = {"available": False, "reason": None, "fix": None}
        try:
            meter = _open(name, args)
        except MeterUnavailableError as e:
            res["reason"], res["fix"] = _split_reason(str(e))
        except ImportError as e:
            if (e.name or "").startswith("wattwise."):
                res["reason"] = f"this wattwise version has no {name} meter ({e})"
            else:
                res["reason"] = f"a library it needs is not installed ({e})"
                res["fix"] = _INSTALL_HINT.get(name) or None
        except (MeterError, OSError, RuntimeError, ValueError) as e:
            res["reason"] = f"{type(e).__name__}: {e}"
        else:
            opened[name] = meter
            res.update(
                available=True,
                estimated=bool(getattr(meter, "estimated", False)),
                domains=list(meter.domains),
            )
        results[name] = res
    first: dict[str, Any] = {}
    for name, meter in list(opened.items()):
        try:
            first[name] = meter.read()
        except MeterError as e:
            results[name].update(available=False, reason=f"opened, but reading failed: {e}")
            meter.close()
            del opened[name]
    if opened:
        time.sleep(max(0.0, args.seconds))
    for name, meter in opened.items():
        try:
            second = meter.read()
        except MeterError as e:
            results[name].update(available=False, reason=f"opened, but reading failed: {e}")
            continue
        finally:
            meter.close()
        a = first[name]
        dt = second.time_s - a.time_s
        watts: dict[str, float | None] = {}
        for dom, j in second.joules.items():
            j0 = a.joules.get(dom)
            watts[dom] = (j - j0) / dt if (j0 is not None and dt > 0) else None
        results[name].update(
            interval_s=dt,
            joules={d: second.joules[d] - a.joules.get(d, 0.0) for d in second.joules},
            watts=watts,
            approximate_domains=sorted(getattr(second, "approximate_domains", ()) or ()),
        )
    return results


def probe_caches(args: argparse.Namespace) -> dict[str, Any]:
    """The detected CPU cache hierarchy (:func:`wattwise.hardware.cpu_hierarchy`), or why not."""
    try:
        from wattwise.hardware import cpu_hierarchy
    except ImportError as e:
        return {"available": False, "reason": f"wattwise.hardware is not available ({e})"}
    try:
        hier = cpu_hierarchy(args.sysfs_root) if args.sysfs_root else cpu_hierarchy()
    except Exception as e:  # noqa: BLE001 - probe reports, never crashes
        return {"available": False, "reason": f"{type(e).__name__}: {e}"}
    return {"available": True, "hierarchy": _hierarchy_json(hier),
            "text": hier.describe() if hasattr(hier, "describe") else None}


def _hierarchy_json(hier: Any) -> Any:
    to_json = getattr(hier, "to_json", None) or getattr(hier, "to_dict", None)
    if callable(to_json):
        return to_json()
    levels = getattr(hier, "levels", hier)
    out: list[Any] = []
    try:
        for lvl in levels:
            if isinstance(lvl, (tuple, list)):
                name, size, units = lvl[:3]
                out.append({"level": name, "bytes_per_unit": size, "units": units})
            elif hasattr(lvl, "__dataclass_fields__"):
                from dataclasses import asdict

                out.append(asdict(lvl))
            else:
                out.append(str(lvl))
    except TypeError:
        return str(hier)
    return out


def _fmt_bytes(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return str(n)
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{v:.4g} {unit}"
    return f"{int(n)} B"


def format_probe(result: dict[str, Any]) -> str:
    """Human-readable text of a probe result."""
    lines = ["Energy meters"]
    for name, res in result["meters"].items():
        if res["available"]:
            kind = "ESTIMATE (not a hardware counter)" if res.get("estimated") else "measured"
            lines.append(f"  {name:<11} readable   {kind}")
            watts = res.get("watts") or {}
            interval = res.get("interval_s")
            for dom, w in watts.items():
                approx = " (approx: power x time)" if dom in res.get("approximate_domains", ()) else ""
                wtxt = "unknown" if w is None or not math.isfinite(w) else f"{w:.2f} W"
                lines.append(f"      {dom:<18} {wtxt} over {interval:.2f} s{approx}")
            if not watts:
                lines.append("      (no domains)")
        else:
            lines.append(f"  {name:<11} not available: {res['reason']}")
            if res.get("fix"):
                lines.append(f"      fix: {res['fix']}")
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
    lines.append("")
    lines.append("CPU cache hierarchy")
    if not caches.get("available"):
        lines.append(f"  not detected: {caches.get('reason')}")
    elif caches.get("text"):
        lines += ["  " + line for line in str(caches["text"]).splitlines()]
    else:
        hier = caches["hierarchy"]
        if isinstance(hier, dict):
            hier = hier.get("levels", hier)
        if isinstance(hier, list):
            for lvl in hier:
                if isinstance(lvl, dict):
                    name = lvl.get("level", lvl.get("name", "?"))
                    size = lvl.get("bytes_per_unit", lvl.get("size_bytes", lvl.get("size")))
                    units = lvl.get("units", "?")
                    lines.append(f"  {name!s:<5} {_fmt_bytes(size):>12} x {units} unit(s)")
                else:
                    lines.append(f"  {lvl}")
        else:
            lines.append(f"  {json.dumps(hier, default=str)}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from wattwise.cli.main import CLIError

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
