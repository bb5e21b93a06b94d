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

import math
from collections.abc import Collection, Mapping, Sequence
from typing import Any

__all__ = [
    "UNKNOWN",
    "epoch_stage",
    "format_number",
    "format_run_table",
    "measurement_label",
    "render_table",
    "stage_labels",
]

UNKNOWN = "n/a"
"""How every wattwise table shows an unknown (None) or not applicable value; never ``0``."""

_COLUMNS = ("phase", "joules", "J/sample", "W", "seconds", "samples")


def format_number(value: Any, *, integer: bool = False) -> str:
    """A number for a table: 3 significant digits below 1, 2 decimals up to 1e5, none above,
    thousands separated, 3 significant digits again from 1e15 (``1e+20``, not 21 digits);
    :data:`UNKNOWN` for None, NaN, infinity or anything not a number, never 0.

    Example:
        >>> format_number(1234.5), format_number(0.02286), format_number(0), format_number(None)
        ('1,234.50', '0.0229', '0.00', 'n/a')
    """
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return UNKNOWN
    try:
        v = float(value)
    except OverflowError:  # an int beyond a float's range
        return UNKNOWN
    if not math.isfinite(v):
        return UNKNOWN
    if abs(v) >= 1e15:
        return f"{v:.3g}"
    if integer:
        return f"{int(value):,}"
    if v != 0 and abs(v) < 1:
        return f"{v:.3g}"
    if abs(v) >= 1e5:
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def render_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    left: Collection[int] = (0,),
    indent: str = "  ",
) -> list[str]:
    """A plain-text table: the header, a line of dashes, the rows; the columns whose index is in
    ``left`` left-aligned (names), the others right-aligned (numbers); every line starts with
    ``indent``."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        out = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return (indent + "  ".join(out)).rstrip()

    return [line(header), indent + "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def stage_labels(summary: Mapping[str, Any]) -> list[str]:
    """One label per entry of a schema-2 summary's ``stages`` (``fit``, ``validate``, ...; a name
    that repeats gets ``#2``, ``#3``...); ``[]`` for a schema-1 summary (one ``fit`` stage)."""
    stages = summary.get("stages")
    if not isinstance(stages, list):
        return []
    seen: dict[str, int] = {}
    labels = []
    for st in stages:
        name = str(st.get("stage", "?")) if isinstance(st, Mapping) else "?"
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return labels


def epoch_stage(record: Mapping[str, Any], labels: Sequence[str]) -> str:
    """The stage label of an epoch record: from its ``stage_index`` into :func:`stage_labels`,
    else its ``stage`` name; ``"fit"`` for schema-1 records, which have neither."""
    index = record.get("stage_index")
    if isinstance(index, int) and not isinstance(index, bool) and 0 <= index < len(labels):
        return labels[index]
    stage = record.get("stage")
    return str(stage) if stage else "fit"


def _row(name: str, rec: Mapping[str, Any], *, samples: bool = True) -> list[str]:
    return [
        name,
        format_number(rec.get("joules")),
        format_number(rec.get("joules_per_sample")),
        format_number(rec.get("watts")),
        format_number(rec.get("seconds")),
        format_number(rec.get("samples"), integer=True) if samples else UNKNOWN,
    ]


def _totals_rows(totals: Mapping[str, Any], stage: str | None) -> list[list[str]]:
    """Rows for one ``totals`` object: its phases, then ``other`` (and ``run`` if present)."""
    rows = [
        _row(str(phase), rec)
        for phase, rec in (totals.get("phases") or {}).items()
        if isinstance(rec, Mapping)
    ]
    for key in ("other", "run"):
        if isinstance(totals.get(key), Mapping):
            rows.append(_row(key, totals[key], samples=False))
    return rows if stage is None else [[stage, *r] for r in rows]


def _table_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: the run totals per phase, or per stage when there are several."""
    totals = summary.get("totals") or {}
    header = list(_COLUMNS)
    if summary.get("estimated"):
        header[1] = "joules (est.)"
    stages = summary.get("stages")
    labels = stage_labels(summary)
    if len(labels) < 2 or not isinstance(stages, list):
        return header, _totals_rows(totals, None)
    rows: list[list[str]] = []
    for label, st in zip(labels, stages):
        if isinstance(st, Mapping) and isinstance(st.get("totals"), Mapping):
            rows += _totals_rows({k: v for k, v in st["totals"].items() if k != "run"}, label)
    if isinstance(totals.get("run"), Mapping):
        rows.append(["all", *_row("run", totals["run"], samples=False)])
    return ["stage", *header], rows


def format_run_table(summary: Mapping[str, Any]) -> str:
    """Format a run summary (from :meth:`~wattwise.EnergyTracker.summary`, or read back from its
    JSON file) as a plain-text table for the console.

    One row per phase with joules, joules per sample (J/sample), average watts (W), seconds and
    samples; a row ``other`` for time outside any phase and a row ``run`` for the whole run.
    The header says whether the numbers are MEASURED (hardware counters) or ESTIMATED; the
    footer lists the meters, idle baseline and active energy, CO2, meters that were
    unavailable (and why) and meters dropped mid-run. Unknown values show as :data:`UNKNOWN`
    (``n/a``). A schema-2 summary with several stages (``fit``, then ``validate`` or ``test``)
    gets a ``stage`` column: each stage's phases and ``other`` time, then the whole ``run``.

    Args:
        summary: the run-summary mapping (schema in ``docs/summary-schema.md``).

    Returns:
        The table, lines joined with ``\\n``, no trailing newline.
    """
    header, rows = _table_rows(summary)
    lines = [_title(summary), *render_table(header, rows, left=(0, 1) if header[0] == "stage" else (0,))]
    return "\n".join(lines + _stage_notes(summary) + _footer(summary))


def measurement_label(summary: Mapping[str, Any]) -> str:
    """How a run's joules were obtained, in words: ``ESTIMATED by codecarbon (no hardware counter
    readable)``, ``MEASURED by hardware counters (nvml, rapl)`` or ``NOT MEASURED (no meter
    available)``; the table's title and the TensorBoard text entry of the callbacks say it.

    Example:
        >>> measurement_label({"estimated": True, "meters": [{"name": "codecarbon"}]})
        'ESTIMATED by codecarbon (no hardware counter readable)'
    """
    used = [m for m in _meters(summary) if m.get("use") != "excluded"]
    names = ", ".join(dict.fromkeys(str(m.get("name")) for m in used)) or "none"
    if summary.get("estimated"):
        return f"ESTIMATED by {names} (no hardware counter readable)"
    if used:
        return f"MEASURED by hardware counters ({names})"
    return "NOT MEASURED (no meter available)"


def _title(summary: Mapping[str, Any]) -> str:
    """``wattwise run 'name': status, MEASURED/ESTIMATED ...`` (and the error, if any)."""
    kind = measurement_label(summary)
    status = summary.get("status", "?")
    name = summary.get("run_name")
    title = (
        f"wattwise run {name!r}: {status}, {kind}" if name else f"wattwise run: {status}, {kind}"
    )
    if summary.get("error"):
        title += f"\n  error: {summary['error']}"
    return title


def _fault_lines(meter: Mapping[str, Any]) -> list[str]:
    """One line per faulted domain of a hardware counter: which faults, how many windows they
    left unknown, and whether the domain was dropped."""
    faults = meter.get("faults")
    dropped = meter.get("dropped_domains")
    out = []
    for domain, kinds in (faults.items() if isinstance(faults, Mapping) else ()):
        if not isinstance(kinds, Mapping) or not kinds:
            continue
        what = ", ".join(f"{str(k).upper()} x{v}" for k, v in kinds.items())
        end = " - domain DROPPED" if isinstance(dropped, Mapping) and domain in dropped else ""
        out.append(f"    {domain}: {what} (those windows are unknown, never 0 J){end}")
    return out


def _meters(summary: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [m for m in summary.get("meters") or [] if isinstance(m, Mapping)]


def _footer(summary: Mapping[str, Any]) -> list[str]:
    """Idle baseline, CO2, meters (dropped ones said so), estimates kept apart, approximate
    domains and unavailable meters."""
    run_rec = (summary.get("totals") or {}).get("run")
    run: Mapping[str, Any] = run_rec if isinstance(run_rec, Mapping) else {}
    lines = []
    idle = summary.get("idle_baseline")
    if isinstance(idle, Mapping):
        lines.append(
            f"  idle baseline: {format_number(idle.get('watts'))} W over "
            f"{format_number(idle.get('seconds'))} s; active (above idle) energy of the run: "
            f"{format_number(run.get('active_joules'))} J"
        )
    carbon = summary.get("carbon_intensity")
    if isinstance(carbon, Mapping):
        lines.append(
            f"  CO2: {format_number(run.get('co2_g'))} g CO2eq at "
            f"{format_number(carbon.get('g_per_kwh'))} g/kWh ({carbon.get('source')})"
        )
    for m in _meters(summary):
        doms = ", ".join(str(d) for d in m.get("domains") or [])
        line = f"  meter {m.get('name')} [{m.get('use', 'measured')}, {m.get('scope', '?')}]: {doms}"
        if m.get("dropped"):
            line += f" - DROPPED: {m['dropped'].get('reason')} (its energy up to then is kept)"
        lines.append(line)
        lines += _fault_lines(m)
    excluded = summary.get("excluded_estimates")
    if isinstance(excluded, Mapping) and excluded.get("joules_by_domain"):
        est = sum(float(v) for v in excluded["joules_by_domain"].values())
        lines.append(f"  estimate kept apart (not in the table): {format_number(est)} J (est.)")
    approx = summary.get("approximate_domains") or []
    if approx:
        lines.append(
            f"  approximate (power x time, no energy counter): {', '.join(map(str, approx))}"
        )
    for meter, reason in (summary.get("unavailable_meters") or {}).items():
        lines.append(f"  unavailable {meter}: {reason}")
    return lines


def _stage_notes(summary: Mapping[str, Any]) -> list[str]:
    """A line for every stage that did not complete (schema 2), with its error."""
    stages = summary.get("stages")
    if not isinstance(stages, list):
        return []
    lines = []
    for label, st in zip(stage_labels(summary), stages):
        status = st.get("status") if isinstance(st, Mapping) else None
        if status not in (None, "completed"):
            error = st.get("error") if isinstance(st, Mapping) else None
            lines.append(f"  stage {label}: {status}" + (f" ({error})" if error else ""))
    return lines
