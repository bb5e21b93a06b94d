"""The console summary table the callbacks print at the end of ``fit``.

Example:
    >>> from wattwise import EnergyTracker
    >>> from wattwise.testing import FakeMeter
    >>> meter = FakeMeter(("gpu:0",), name="nvml")
    >>> tracker = EnergyTracker([meter], run_name="demo")
    >>> tracker.start()
    >>> tracker.start_window("train", 0); tracker.add_batch(100); meter.advance(50.0)
    >>> _ = tracker.end_window()
    >>> print(format_run_table(tracker.finish()).splitlines()[0])
    wattwise run 'demo': completed, MEASURED by hardware counters (nvml)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["format_run_table"]

_COLUMNS = ("phase", "joules", "J/sample", "W", "seconds", "samples")


def _fmt(value: Any, *, integer: bool = False) -> str:
    """A number for the table; ``n/a`` for unknown (None), never 0."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return "n/a"
    if integer:
        return f"{int(value):,}"
    v = float(value)
    if v != 0 and abs(v) < 0.01:
        return f"{v:.3e}"
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def _row(name: str, rec: Mapping[str, Any], *, samples: bool = True) -> list[str]:
    return [
        name,
        _fmt(rec.get("joules")),
        _fmt(rec.get("joules_per_sample")),
        _fmt(rec.get("watts")),
        _fmt(rec.get("seconds")),
        _fmt(rec.get("samples"), integer=True) if samples else "-",
    ]


def format_run_table(summary: Mapping[str, Any]) -> str:
    """Format a run summary (from :meth:`~wattwise.EnergyTracker.summary`, or read back from its
    JSON file) as a plain-text table for the console.

    One row per phase with joules, joules per sample (J/sample), average watts (W), seconds and
    samples; a row ``other`` for time outside any phase and a row ``run`` for the whole run.
    The header says whether the numbers are MEASURED (hardware counters) or ESTIMATED; the
    footer lists the meters, idle baseline and active energy, CO2, meters that were
    unavailable (and why) and meters dropped mid-run. Unknown values show as ``n/a``.

    Args:
        summary: the run-summary mapping (schema in ``docs/summary-schema.md``).

    Returns:
        The table, lines joined with ``\\n``, no trailing newline.
    """
    meters = [m for m in summary.get("meters") or [] if isinstance(m, Mapping)]
    used = [m for m in meters if m.get("use") != "excluded"]
    names = ", ".join(dict.fromkeys(str(m.get("name")) for m in used)) or "none"
    estimated = bool(summary.get("estimated"))
    kind = (
        f"ESTIMATED by {names} (no hardware counter readable)"
        if estimated
        else (
            f"MEASURED by hardware counters ({names})"
            if used
            else "NOT MEASURED (no meter available)"
        )
    )
    status = summary.get("status", "?")
    name = summary.get("run_name")
    title = (
        f"wattwise run {name!r}: {status}, {kind}" if name else f"wattwise run: {status}, {kind}"
    )
    if summary.get("error"):
        title += f"\n  error: {summary['error']}"

    totals = summary.get("totals") or {}
    phases = totals.get("phases") or {}
    header = list(_COLUMNS)
    if estimated:
        header[1] = "joules (est.)"
    rows = [header]
    for phase, rec in phases.items():
        if isinstance(rec, Mapping):
            rows.append(_row(str(phase), rec))
    if isinstance(totals.get("other"), Mapping):
        rows.append(_row("other", totals["other"], samples=False))
    if isinstance(totals.get("run"), Mapping):
        rows.append(_row("run", totals["run"], samples=False))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title]
    for i, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]
        lines.append("  " + "  ".join(cells))
        if i == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))

    run_rec = totals.get("run")
    run: Mapping[str, Any] = run_rec if isinstance(run_rec, Mapping) else {}
    idle = summary.get("idle_baseline")
    if isinstance(idle, Mapping):
        lines.append(
            f"  idle baseline: {_fmt(idle.get('watts'))} W over {_fmt(idle.get('seconds'))} s; "
            f"active (above idle) energy of the run: {_fmt(run.get('active_joules'))} J"
        )
    carbon = summary.get("carbon_intensity")
    if isinstance(carbon, Mapping):
        lines.append(
            f"  CO2: {_fmt(run.get('co2_g'))} g CO2eq at {_fmt(carbon.get('g_per_kwh'))} g/kWh "
            f"({carbon.get('source')})"
        )
    for m in meters:
        doms = ", ".join(str(d) for d in m.get("domains") or [])
        use = m.get("use", "measured")
        line = f"  meter {m.get('name')} [{use}, {m.get('scope', '?')}]: {doms}"
        if m.get("dropped"):
            line += f" - DROPPED: {m['dropped'].get('reason')} (its energy up to then is kept)"
        lines.append(line)
    excluded = summary.get("excluded_estimates")
    if isinstance(excluded, Mapping) and excluded.get("joules_by_domain"):
        est = sum(float(v) for v in excluded["joules_by_domain"].values())
        lines.append(f"  estimate kept apart (not in the table): {_fmt(est)} J (est.)")
    approx = summary.get("approximate_domains") or []
    if approx:
        lines.append(
            f"  approximate (power x time, no energy counter): {', '.join(map(str, approx))}"
        )
    for meter, reason in (summary.get("unavailable_meters") or {}).items():
        lines.append(f"  unavailable {meter}: {reason}")
    return "\n".join(lines)
