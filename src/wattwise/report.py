"""Multi-run reports from run summaries: tables, CSV and plots.

A run summary is the JSON file :class:`~wattwise.EnergyTracker` writes (schema in
``docs/summary-schema.md``). This module flattens one or several summaries into rows (one per
run, epoch and phase), prints them as tables (side by side when several runs are given), writes
CSV and draws plots with matplotlib (imported lazily, Agg backend).

Unknown values stay ``None`` (printed as :data:`wattwise.console.UNKNOWN`, ``n/a``; empty in
CSV), never 0. Estimated numbers are labelled ``estimated`` in every table, CSV row and plot
legend. Both summary schemas are read: version 1, and version 2 whose epoch records name their
stage (``fit``, ``validate``, ``test``, ``predict``); version-1 epochs belong to ``fit``.

Example:
    >>> from wattwise.report import load_summary, report_rows, format_report
    >>> s = load_summary("wattwise_runs/demo/summary.json")  # doctest: +SKIP
    >>> print(format_report([s]))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from html import escape
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from wattwise._record import record
from wattwise.console import UNKNOWN, epoch_stage, format_number, render_table, stage_labels
from wattwise.errors import ConfigurationError
from wattwise.summary import SCHEMA_VERSION, read_summary

if TYPE_CHECKING:  # pragma: no cover - optional stacks, imported when used
    import pandas
    from matplotlib.figure import Figure

__all__ = [
    "ReportRow",
    "RunSummary",
    "check_summary",
    "load_summary",
    "run_label",
    "run_labels",
    "report_rows",
    "format_report",
    "format_comparison",
    "write_csv",
    "rows_to_csv",
    "plot_runs",
    "report_figure",
    "CSV_COLUMNS",
]

_PHASE_ORDER = ("train", "validate", "test", "predict")


@record
class ReportRow:
    """One phase of one epoch (or of the run totals, ``epoch=None``) of one run.

    Attributes:
        run: the run's label (its ``run_name`` or the file name).
        epoch: the epoch index, or None for the run totals.
        phase: ``"train"``, ``"validate"``, ``"test"`` or ``"predict"``.
        joules: energy of the phase in joules, None when unknown.
        joules_per_sample: joules per training sample, None when unknown.
        watts: average power in watts, None when unknown.
        seconds: wall time of the phase in seconds.
        samples: samples processed, None when unknown.
        estimated: True when the joules are estimates (no hardware counter).
        stage: the stage the epoch belongs to (``"fit"``, ``"validate"``, ...; ``"fit"`` for a
            schema-1 summary), or ``"all"`` for the run totals.
    """

    run: str
    epoch: int | None
    phase: str
    joules: float | None
    joules_per_sample: float | None
    watts: float | None
    seconds: float | None
    samples: int | None
    estimated: bool
    stage: str = "fit"

    @property
    def source(self) -> str:
        """``"estimated"`` or ``"measured"``."""
        return "estimated" if self.estimated else "measured"


CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ReportRow)) + ("source",)


# --------------------------------------------------------------------------------------------
# loading


def load_summary(path: str | os.PathLike[str]) -> RunSummary:
    """Read one run summary JSON file with :func:`wattwise.summary.read_summary` and check it
    (:func:`check_summary`).

    Also available as ``wattwise.load_summary``. In Jupyter the result shows as a table.

    Args:
        path: the summary file a callback or :class:`~wattwise.EnergyTracker` wrote, or a
            folder holding exactly one ``.json`` file.

    Returns:
        The summary as a read-only :class:`RunSummary` (a mapping over the JSON; its ``path``
        is the file it came from).

    Example:
        >>> import wattwise
        >>> s = wattwise.load_summary("runs/energy.json")  # doctest: +SKIP
        >>> s["totals"]["phases"]["train"]["joules_per_sample"]  # doctest: +SKIP
        0.0123
        >>> s.to_pandas()  # one row per epoch and phase  # doctest: +SKIP

    Raises:
        ConfigurationError: the file is missing or unreadable, is not UTF-8 JSON, is nested too
            deeply, is not a run summary of a schema version this wattwise reads, or has a
            field whose type is not the schema's (the message names the field).
    """
    p = Path(path)
    if p.is_dir():
        candidates = sorted(p.glob("*.json"))
        if len(candidates) != 1:
            raise ConfigurationError(
                f"run summary {str(path)!r} is a folder with {len(candidates)} .json files; "
                "give the run summary file itself (e.g. .../summary.json)"
            )
        p = candidates[0]
    try:
        data = read_summary(p)
    except FileNotFoundError:
        raise ConfigurationError(
            f"run summary {str(path)!r} does not exist; give the path of a summary "
            "JSON written by EnergyMonitor/EnergyTracker (summary_path=...)"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigurationError(
            f"run summary {str(path)!r}: not UTF-8 text ({e.reason} at byte {e.start}); "
            "expected the JSON file EnergyMonitor/EnergyTracker wrote"
        ) from None
    except RecursionError:
        raise ConfigurationError(
            f"run summary {str(path)!r}: JSON nested too deeply to be a run summary"
        ) from None
    except OSError as e:
        raise ConfigurationError(
            f"run summary {str(path)!r}: cannot read: {e.strerror or e}"
        ) from None
    check_summary(data, str(path))
    return RunSummary(data, p)


# --------------------------------------------------------------------------------------------
# checking a summary read from a file against docs/summary-schema.md

_NUMBER_FIELDS = ("joules", "seconds", "joules_per_sample", "joules_per_batch", "watts", "co2_g")
_COUNT_FIELDS = ("samples", "batches")


def _bad(where: str, field: str, value: Any, expected: str) -> ConfigurationError:
    """The error for ``field`` holding ``value`` (shown as JSON: ``null``, ``"x"``, a list...)."""
    if isinstance(value, (dict, list)):
        got = "a list" if isinstance(value, list) else "an object"
    else:
        got = f"{json.dumps(value):.60}"
    return ConfigurationError(f"run summary {where!r}: {field} is {got}; expected {expected}")


_INT_LIMIT = 2**63  # counts and epoch indexes beyond a 64-bit integer are not a run's


def _is_number(value: Any) -> bool:
    """A JSON number that is a float without overflow (not a bool, not NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return abs(value) < _INT_LIMIT if isinstance(value, int) else math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < _INT_LIMIT


def _is_count(value: Any) -> bool:
    return _is_int(value) and value >= 0


def _check_fields(obj: Mapping[str, Any], where: str, field: str,
                  spec: Mapping[str, tuple[Any, str]]) -> None:
    """Each key of ``spec`` present in ``obj`` (and not null) passes its test."""
    for key, (test, expected) in spec.items():
        value = obj.get(key)
        if value is not None and not test(value):
            raise _bad(where, f"{field}.{key}" if field else key, value, expected)


def _is_amount(value: Any) -> bool:
    return _is_number(value) and value >= 0


_RECORD_SPEC: dict[str, tuple[Any, str]] = {
    **{k: (_is_amount, "a finite number >= 0 or null") for k in _NUMBER_FIELDS},
    "active_joules": (_is_number, "a finite number or null"),  # negative near idle
    **{k: (_is_count, "an integer in 0..2**63-1 or null") for k in _COUNT_FIELDS},
    "estimated": (lambda v: isinstance(v, bool), "true or false"),
    "joules_by_domain": (lambda v: isinstance(v, dict) and all(
        x is None or _is_amount(x) for x in v.values()), "an object of domain -> joules or null"),
}


def _check_record(rec: Any, where: str, field: str) -> None:
    if not isinstance(rec, dict):
        raise _bad(where, field, rec, "a phase record (an object)")
    _check_fields(rec, where, field, _RECORD_SPEC)


def _check_totals(tot: Any, where: str, field: str) -> None:
    """``totals``: ``phases`` (phase -> record), ``other`` and ``run`` (records or null)."""
    if not isinstance(tot, dict):
        raise _bad(where, field, tot, "an object with 'phases'")
    phases = tot.get("phases")
    if not isinstance(phases, dict):
        raise _bad(where, f"{field}.phases", phases, "an object of phase -> record")
    for name, rec in phases.items():
        _check_record(rec, where, f"{field}.phases.{name}")
    for key in ("other", "run"):
        if tot.get(key) is not None:
            _check_record(tot[key], where, f"{field}.{key}")


def _check_list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    """``data[key]`` as a list of objects (missing or null: empty)."""
    items = data.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise _bad(where, key, items, "a list of objects")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(where, f"{key}[{i}]", item, "an object")
    return items


_TOP_SPEC: dict[str, tuple[Any, str]] = {
    "run_name": (lambda v: isinstance(v, str), "a string or null"),
    "status": (lambda v: isinstance(v, str), "a string"),
    "estimated": (lambda v: isinstance(v, bool), "true or false"),
    "epochs_completed": (_is_count, "an integer >= 0"),
    "advice": (lambda v: isinstance(v, dict), "an object or null"),
}
_EPOCH_SPEC: dict[str, tuple[Any, str]] = {
    "epoch": (_is_int, "an integer"),
    "stage": (lambda v: isinstance(v, str), "a string"),
    "stage_index": (_is_count, "an integer >= 0"),
    "complete": (lambda v: isinstance(v, bool), "true or false"),
}


def check_summary(data: Mapping[str, Any], where: str = "summary") -> None:
    """Check that a run summary read from a file has the shape ``docs/summary-schema.md`` gives:
    a known ``schema_version``; ``epochs`` and ``stages`` lists of objects; every epoch's
    ``phases`` and the ``totals`` objects of phase records; numbers finite or null, counts
    non-negative integers or null. Missing numbers are unknown (null), not errors.

    Args:
        data: the parsed JSON.
        where: the file name, for the message.

    Raises:
        ConfigurationError: naming the first field that does not fit, its value and what was
            expected.
    """
    version: Any = data.get("schema_version")
    if not _is_int(version) or not 1 <= version <= SCHEMA_VERSION:
        raise _bad(where, "schema_version", version,
                   f"1..{SCHEMA_VERSION} (this wattwise reads versions 1 to {SCHEMA_VERSION})")
    _check_fields(data, where, "", _TOP_SPEC)
    for i, meter in enumerate(_check_list(data, "meters", where)):
        _check_fields(meter, where, f"meters[{i}]", {
            "name": (lambda v: isinstance(v, str), "a string"),
            "estimated": (lambda v: isinstance(v, bool), "true or false")})
    for i, stage in enumerate(_check_list(data, "stages", where)):
        _check_fields(stage, where, f"stages[{i}]", {
            "stage": (lambda v: isinstance(v, str), "a string"),
            "status": (lambda v: isinstance(v, str), "a string")})
        if stage.get("totals") is not None:
            _check_totals(stage["totals"], where, f"stages[{i}].totals")
    for i, ep in enumerate(_check_list(data, "epochs", where)):
        _check_fields(ep, where, f"epochs[{i}]", _EPOCH_SPEC)
        phases = ep.get("phases")
        if not isinstance(phases, dict):
            raise _bad(where, f"epochs[{i}].phases", phases, "an object of phase -> record")
        for name, rec in phases.items():
            _check_record(rec, where, f"epochs[{i}].phases.{name}")
    _check_totals(data.get("totals"), where, "totals")


def run_label(summary: Mapping[str, Any], index: int = 0) -> str:
    """A short label for a run: its ``run_name``, else its file's stem, else ``run<index>``."""
    name = summary.get("run_name")
    if isinstance(name, str) and name:
        return name
    p = _summary_path(summary)
    if p is not None:
        return p.parent.name if p.stem in ("summary", "run") and p.parent.name else p.stem
    return f"run{index}"


def _summary_path(summary: Mapping[str, Any]) -> Path | None:
    """The file a summary was read from: :attr:`RunSummary.path`, or a dict's ``"_path"``."""
    path = getattr(summary, "path", None)
    if isinstance(path, Path):
        return path
    path = summary.get("_path")
    return Path(path) if isinstance(path, str) else None


def _num(value: Any) -> float | None:
    """``value`` as a finite float, else None (unknown: null, not a number, NaN, too large)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        v = float(value)
    except OverflowError:
        return None
    return v if math.isfinite(v) else None


def _ratio(num: float | None, den: float | None) -> float | None:
    """``num / den`` when both are known, ``den`` is not 0 and the quotient is finite."""
    if num is None or not den:
        return None
    return _num(num / den)


def _int(value: Any) -> int | None:
    v = _num(value)
    return None if v is None else int(v)


def _phase_items(phases: Any) -> Iterable[tuple[str, Mapping[str, Any]]]:
    """Phases as (name, record) pairs, whether stored as a mapping or as a list of records."""
    if isinstance(phases, Mapping):
        items = [(str(k), v) for k, v in phases.items() if isinstance(v, Mapping)]
    elif isinstance(phases, list):
        items = [(str(v.get("phase", "?")), v) for v in phases if isinstance(v, Mapping)]
    else:
        items = []
    order = {p: i for i, p in enumerate(_PHASE_ORDER)}
    return sorted(items, key=lambda kv: order.get(kv[0], len(order)))


def _summary_estimated(summary: Mapping[str, Any]) -> bool:
    est = summary.get("estimated")
    if isinstance(est, bool):
        return est
    meters = summary.get("meters")
    if isinstance(meters, Mapping):
        meters = meters.get("used", meters.get("in_use", []))
    if isinstance(meters, list) and meters:
        return all(bool(m.get("estimated")) for m in meters if isinstance(m, Mapping))
    return False


def _row(
    run: str, epoch: int | None, phase: str, rec: Mapping[str, Any], est: bool, stage: str
) -> ReportRow:
    joules = _num(rec.get("joules"))
    seconds = _num(rec.get("seconds"))
    samples = _int(rec.get("samples"))
    jps = _num(rec.get("joules_per_sample"))
    if jps is None:
        jps = _ratio(joules, samples)
    watts = _num(rec.get("watts"))
    if watts is None:
        watts = _ratio(joules, seconds)
    estimated = rec.get("estimated")
    return ReportRow(
        run=run,
        epoch=epoch,
        phase=phase,
        joules=joules,
        joules_per_sample=jps,
        watts=watts,
        seconds=seconds,
        samples=samples,
        estimated=bool(estimated) if isinstance(estimated, bool) else est,
        stage=stage,
    )


def report_rows(
    summary: Mapping[str, Any], label: str | None = None, *, totals: bool = True
) -> list[ReportRow]:
    """Flatten one run summary into rows: one per epoch and phase, then the run totals.

    Args:
        summary: a run summary dict (from :func:`load_summary` or ``EnergyTracker.summary()``).
        label: the run label; default :func:`run_label`.
        totals: also return the run totals per phase (rows with ``epoch=None``, stage
            ``"all"``).

    Returns:
        The rows, epochs in order (each labelled with its stage), phases in the order train,
        validate, test, predict.
    """
    run = label if label is not None else run_label(summary)
    est = _summary_estimated(summary)
    labels = stage_labels(summary)
    rows: list[ReportRow] = []
    epochs = summary.get("epochs")
    if isinstance(epochs, Mapping):
        epochs = [dict(v, epoch=v.get("epoch", k)) for k, v in epochs.items()
                  if isinstance(v, Mapping)]
    for i, ep in enumerate(epochs if isinstance(epochs, list) else []):
        if not isinstance(ep, Mapping):
            continue
        epoch = _int(ep.get("epoch"))
        stage = epoch_stage(ep, labels)
        for phase, rec in _phase_items(ep.get("phases")):
            rows.append(_row(run, i if epoch is None else epoch, phase, rec, est, stage))
    if totals:
        tot = summary.get("totals") or {}
        if isinstance(tot, Mapping) and isinstance(tot.get("phases"), (Mapping, list)):
            tot = tot["phases"]
        for phase, rec in _phase_items(tot):
            rows.append(_row(run, None, phase, rec, est, "all"))
    return rows


# --------------------------------------------------------------------------------------------
# formatting (numbers, tables and the unknown marker are wattwise.console's)


def _meter_line(summary: Mapping[str, Any]) -> str:
    meters = summary.get("meters")
    names: list[str] = []
    if isinstance(meters, Mapping):
        meters = meters.get("used", meters.get("in_use", []))
    if isinstance(meters, list):
        for m in meters:
            if isinstance(m, Mapping):
                tag = " (estimate)" if m.get("estimated") else ""
                names.append(f"{m.get('name', '?')}{tag}")
            elif isinstance(m, str):
                names.append(m)
    return ", ".join(names) if names else "unknown"


def format_run(summary: Mapping[str, Any], label: str | None = None) -> str:
    """One run as a table: per epoch and phase joules, J/sample, W, seconds, samples and
    measured/estimated, then the run totals; with a ``stage`` column when the run had several
    stages (schema 2: ``fit``, then ``validate``/``test``/``predict``)."""
    run = label if label is not None else run_label(summary)
    rows = report_rows(summary, run)
    status = summary.get("status", "?")
    head = f"Run {run}  (status: {status}; meters: {_meter_line(summary)})"
    if _summary_estimated(summary):
        head += "\n  ESTIMATES: no hardware energy counter was readable; joules are estimated."
    if not rows:
        return head + "\n  (no epochs recorded)"
    staged = len({r.stage for r in rows if r.epoch is not None}) > 1 or len(stage_labels(summary)) > 1
    header = ["epoch", "phase", "joules", "J/sample", "watts", "seconds", "samples", "source"]
    body = [
        [
            "total" if r.epoch is None else str(r.epoch),
            r.phase,
            format_number(r.joules),
            format_number(r.joules_per_sample),
            format_number(r.watts),
            format_number(r.seconds),
            format_number(r.samples, integer=True),
            r.source,
        ]
        for r in rows
    ]
    if staged:
        header = ["stage", *header]
        body = [[r.stage, *b] for r, b in zip(rows, body)]
    names = {i for i, h in enumerate(header) if h in ("stage", "epoch", "phase", "source")}
    table = render_table(header, body, left=names, indent="")
    return head + "\n" + "\n".join(table)


def format_comparison(summaries: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """Several runs side by side: run totals per phase, one column per run."""
    per_run = [
        {r.phase: r for r in report_rows(s, lab) if r.epoch is None}
        for s, lab in zip(summaries, labels)
    ]
    phases = [p for p in _PHASE_ORDER if any(p in d for d in per_run)]
    phases += sorted({p for d in per_run for p in d} - set(phases))
    quantities = (
        ("joules", "joules"),
        ("J/sample", "joules_per_sample"),
        ("watts", "watts"),
        ("seconds", "seconds"),
    )
    body: list[list[str]] = []
    for phase in phases:
        rows = [d.get(phase) for d in per_run]
        for qname, attr in quantities:
            body.append([phase, qname, *(format_number(getattr(r, attr, None)) for r in rows)])
        body.append([phase, "source", *(UNKNOWN if r is None else r.source for r in rows)])
    table = render_table(["phase", "quantity", *labels], body, left=(0, 1), indent="")
    return "Runs side by side (run totals)\n" + "\n".join(table)


def run_labels(summaries: Sequence[Mapping[str, Any]]) -> list[str]:
    """Unique labels for the runs, by name (see :func:`run_label`).

    Runs whose names collide (two ``runs/*/energy.json`` files, the same ``run_name`` twice)
    are told apart by the shortest end of their file paths that differs (``a/energy``,
    ``b/energy``; ``demo (a/energy)`` for a shared run name); only runs that cannot be told
    apart that way (the same file twice, summaries without a path) get ``#2``, ``#3``...
    """
    labels = [run_label(s, i) for i, s in enumerate(summaries)]
    groups: dict[str, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    for lab, members in groups.items():
        paths = [_summary_path(summaries[i]) for i in members]
        if len(members) < 2 or any(p is None for p in paths):
            continue
        parts = [p.with_suffix("").parts for p in paths if p is not None]
        for n in range(1, max(len(x) for x in parts) + 1):
            tails = ["/".join(x[-n:]) for x in parts]
            if len(set(tails)) == len(tails):
                for i, tail in zip(members, tails):
                    named = summaries[i].get("run_name")
                    labels[i] = f"{lab} ({tail})" if isinstance(named, str) and named else tail
                break
    seen: dict[str, int] = {}
    out = []
    for lab in labels:
        n = seen.get(lab, 0)
        seen[lab] = n + 1
        out.append(lab if n == 0 else f"{lab}#{n + 1}")
    return out


def format_report(summaries: Sequence[Mapping[str, Any]]) -> str:
    """The full text report: one table per run, then the runs side by side if there are several."""
    labels = run_labels(summaries)
    parts = [format_run(s, lab) for s, lab in zip(summaries, labels)]
    if len(summaries) > 1:
        parts.append(format_comparison(summaries, labels))
    return "\n\n".join(parts)


# --------------------------------------------------------------------------------------------
# CSV


def write_csv(rows: Iterable[ReportRow], out: IO[str]) -> int:
    """Write rows as CSV (header :data:`CSV_COLUMNS`; unknown values empty). Returns row count."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    n = 0
    for r in rows:
        d = asdict(r)
        w.writerow(
            ["total" if k == "epoch" and d[k] is None else ("" if d[k] is None else d[k])
             for k in CSV_COLUMNS[:-1]]
            + [r.source]
        )
        n += 1
    return n


def rows_to_csv(rows: Iterable[ReportRow]) -> str:
    """CSV text of the rows (see :func:`write_csv`)."""
    buf = io.StringIO()
    write_csv(rows, buf)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------
# the loaded summary: a mapping that shows as a table in Jupyter and converts to pandas

_HTML_MAX_EPOCHS = 20  # more epochs than this: the first and last ten, and a "not shown" row

_FRAME_COLUMNS = ("run", "stage", "epoch", "phase", "joules", "joules_per_sample", "watts",
                  "seconds", "samples", "estimated", "source")


class RunSummary(dict[str, Any]):
    """A run summary read back from its JSON file: a read-only dict of the JSON (so code that
    used the dict keeps working, ``json.dumps`` included), with views for notebooks.

    In Jupyter it shows as a table (:meth:`_repr_html_`): per epoch and phase the joules,
    J/sample, watts, seconds and samples, then the run totals; unknown values are ``n/a``
    (never 0) and estimated numbers are marked *estimated*. :meth:`to_pandas` gives the same
    rows as a DataFrame; :meth:`plot` the figure of ``wattwise report --plot``.

    Made by :func:`load_summary` (``wattwise.load_summary``); the fields are those of
    ``docs/summary-schema.md``. The top level cannot be changed (``TypeError``); ``to_dict()``
    gives an editable deep copy.

    Args:
        data: the parsed summary JSON.
        path: the file it was read from, or None.

    Example:
        >>> from wattwise.report import RunSummary
        >>> s = RunSummary({"schema_version": 2, "run_name": "demo", "status": "completed",
        ...                 "estimated": False, "epochs": [], "totals": {"phases": {}}})
        >>> s.name, s["status"], s.estimated
        ('demo', 'completed', False)
    """

    def __init__(self, data: Mapping[str, Any], path: str | os.PathLike[str] | None = None) -> None:
        super().__init__((k, v) for k, v in data.items() if k != "_path")
        self.path = Path(path) if path is not None else None

    def _read_only(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("RunSummary is read-only (the run summary as written); "
                        "use .to_dict() for an editable copy")

    __setitem__ = __delitem__ = _read_only  # type: ignore[assignment]
    pop = popitem = clear = update = setdefault = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:  # copy, deepcopy and pickle without __setitem__
        return (RunSummary, (dict(self), self.path))

    def __repr__(self) -> str:
        epochs = self.get("epochs")
        n = len(epochs) if isinstance(epochs, list) else 0
        where = f", path={str(self.path)!r}" if self.path is not None else ""
        source = "estimated" if self.estimated else "measured"
        return (f"RunSummary({self.name!r}, status={self.get('status', '?')!r}, "
                f"epochs={n}, {source}{where})")

    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the summary as a plain dict (for ``json.dump`` or editing)."""
        copied: dict[str, Any] = json.loads(json.dumps(self, default=str))
        return copied

    # views
    @property
    def name(self) -> str:
        """The run's label: its ``run_name``, else its folder or file name (:func:`run_label`)."""
        return run_label(self)

    @property
    def estimated(self) -> bool:
        """True when the joules are estimates (no hardware counter was readable)."""
        return _summary_estimated(self)

    def rows(self, *, totals: bool = True) -> list[ReportRow]:
        """The run as :class:`ReportRow` objects (see :func:`report_rows`)."""
        return report_rows(self, self.name, totals=totals)

    def to_pandas(self, *, totals: bool = False) -> pandas.DataFrame:
        """The run as a pandas DataFrame: one row per epoch and phase.

        Columns: ``run``, ``stage``, ``epoch``, ``phase``, ``joules`` (J),
        ``joules_per_sample`` (J), ``watts`` (W), ``seconds`` (s), ``samples``, ``estimated``
        (bool) and ``source`` (``"measured"`` or ``"estimated"``). Unknown numbers are missing
        (``NaN``; ``<NA>`` in the integer columns ``epoch`` and ``samples``), never 0.

        Args:
            totals: also add the run totals per phase (rows with stage ``"all"`` and epoch
                ``<NA>``). Default False.

        Raises:
            ImportError: pandas is not installed (``pip install pandas``).
        """
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError(
                "RunSummary.to_pandas() needs pandas, which is not installed: pip install pandas"
            ) from e
        rows = self.rows(totals=totals)
        cols: dict[str, Any] = {c: [getattr(r, c) for r in rows] for c in _FRAME_COLUMNS}
        frame = pd.DataFrame({
            **cols,
            "epoch": pd.array(cols["epoch"], dtype="Int64"),
            "samples": pd.array(cols["samples"], dtype="Int64"),
            **{c: pd.array([math.nan if v is None else v for v in cols[c]], dtype="float64")
               for c in ("joules", "joules_per_sample", "watts", "seconds")},
            "estimated": pd.array(cols["estimated"], dtype="bool"),
        }, columns=list(_FRAME_COLUMNS))
        return frame

    to_dataframe = to_pandas

    def plot(self) -> Figure:
        """The figure of ``wattwise report --plot`` for this run (see :func:`report_figure`)."""
        return report_figure([self])

    def _repr_html_(self) -> str:
        """A compact HTML table for Jupyter: per epoch and phase, then the run totals."""
        return _summary_html(self)


def _summary_html(summary: RunSummary) -> str:
    rows = summary.rows()
    est = summary.estimated
    status = str(summary.get("status", "?"))
    meters = _meter_line(summary)
    mark = ('<b style="color:#b35900">ESTIMATED</b> (no hardware counter was readable)' if est
            else "<b>measured</b> by hardware counters")
    head = (f"<p><b>wattwise run</b> <code>{escape(summary.name)}</code> &middot; "
            f"status: {escape(status)} &middot; {mark} &middot; meters: {escape(meters)}</p>")
    if not rows:
        return f'<div class="wattwise-summary">{head}<p>(no epochs recorded)</p></div>'
    staged = len({r.stage for r in rows if r.epoch is not None}) > 1 or len(stage_labels(summary)) > 1
    header = ["epoch", "phase", "joules [J]", "J/sample [J]", "watts [W]", "seconds [s]",
              "samples", "source"]
    if staged:
        header.insert(0, "stage")
    epochs = list(dict.fromkeys((r.stage, r.epoch) for r in rows if r.epoch is not None))
    shown = set(epochs)
    hidden = 0
    if len(epochs) > _HTML_MAX_EPOCHS:
        keep = _HTML_MAX_EPOCHS // 2
        shown = set(epochs[:keep] + epochs[-keep:])
        hidden = len(epochs) - 2 * keep
    cell = '<td style="text-align:right">{}</td>'
    body: list[str] = []
    gap_done = False
    for r in rows:
        if r.epoch is not None and (r.stage, r.epoch) not in shown:
            if not gap_done:
                gap_done = True
                body.append(f'<tr><td colspan="{len(header)}" style="text-align:center">'
                            f"&hellip; {hidden} epochs not shown (<code>.to_pandas()</code> has "
                            "them all) &hellip;</td></tr>")
            continue
        source = ('<i style="color:#b35900">estimated</i>' if r.estimated else "measured")
        cells = [
            f"<td>{'<b>total</b>' if r.epoch is None else r.epoch}</td>",
            f"<td>{escape(r.phase)}</td>",
            cell.format(format_number(r.joules)),
            cell.format(format_number(r.joules_per_sample)),
            cell.format(format_number(r.watts)),
            cell.format(format_number(r.seconds)),
            cell.format(format_number(r.samples, integer=True)),
            f"<td>{source}</td>",
        ]
        if staged:
            cells.insert(0, f"<td>{escape(r.stage)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    thead = "".join(f"<th>{escape(h)}</th>" for h in header)
    note = (f"<p><small>{UNKNOWN}: unknown (never shown as 0). ")
    if est:
        note += "Estimated joules come from a power model, not a counter. "
    note += "</small></p>"
    return (f'<div class="wattwise-summary">{head}<table><thead><tr>{thead}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>{note}</div>")


# --------------------------------------------------------------------------------------------
# plots

_ESTIMATED_HATCH = "///"


@dataclass
class _PlotRun:
    """What the figure draws of one run."""

    label: str  # the run's name, with " (estimated)" for estimates
    estimated: bool
    epochs: list[int]
    joules: list[float]  # per fit epoch, all phases summed; NaN when a phase is unknown
    train_jps: list[float]  # per fit epoch, train J/sample; NaN when unknown
    totals_jps: dict[str, float | None]  # run totals: phase -> J/sample


def _plot_data(summaries: Sequence[Mapping[str, Any]]) -> list[_PlotRun]:
    runs = []
    for s, lab in zip(summaries, run_labels(summaries)):
        rows = report_rows(s, lab)
        est = _summary_estimated(s) or any(r.estimated for r in rows)
        per_epoch: dict[int, list[ReportRow]] = {}
        for r in rows:  # training epochs only: a validate/test stage restarts at epoch 0
            if r.epoch is not None and r.stage.split("#")[0] == "fit":
                per_epoch.setdefault(r.epoch, []).append(r)
        xs = sorted(per_epoch)
        joules: list[float] = []
        train: list[float] = []
        for x in xs:
            vals = [r.joules for r in per_epoch[x]]
            total = None if any(v is None for v in vals) else _num(sum(v for v in vals if v))
            joules.append(math.nan if total is None else total)
            jps = next((r.joules_per_sample for r in per_epoch[x] if r.phase == "train"), None)
            train.append(math.nan if jps is None else jps)
        runs.append(_PlotRun(
            label=f"{lab} (estimated)" if est else lab, estimated=est, epochs=xs,
            joules=joules, train_jps=train,
            totals_jps={r.phase: r.joules_per_sample for r in rows if r.epoch is None},
        ))
    return runs


def report_figure(summaries: Sequence[Mapping[str, Any]]) -> Figure:
    """The figure of ``wattwise report --plot``: three panels, one colour per run.

    1. energy per training epoch, all phases of the epoch summed (J);
    2. training joules per sample per epoch (J);
    3. joules per sample of each phase over the whole run (bars; ``n/a`` when unknown).

    Epoch axes have integer ticks; runs are labelled by their names (:func:`run_labels`) in one
    legend below the panels, outside the data. Estimates are marked: dashed lines with open
    markers, hatched bars and ``(estimated)`` after the run's name. An unknown value is a gap
    (or ``n/a``), never 0. The figure is built without pyplot, so no backend is chosen; in
    Jupyter it displays inline.

    Args:
        summaries: run summaries (:func:`load_summary`).

    Returns:
        A ``matplotlib.figure.Figure``.

    Raises:
        ConfigurationError: matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator
    except ImportError as e:
        raise ConfigurationError(
            'report --plot needs matplotlib: pip install "wattwise[plot]"'
        ) from e
    runs = _plot_data(summaries)
    fig = Figure(figsize=(12.0, 3.8))
    ax_j, ax_s, ax_p = fig.subplots(1, 3)
    colours = [f"C{i % 10}" for i in range(len(runs))]
    handles = []
    for run, colour in zip(runs, colours):
        style: dict[str, Any] = dict(color=colour, marker="o", markersize=5, linewidth=1.6,
                                     linestyle="--" if run.estimated else "-",
                                     markerfacecolor="white" if run.estimated else colour)
        (line,) = ax_j.plot(run.epochs, run.joules, label=run.label, **style)
        ax_s.plot(run.epochs, run.train_jps, label=run.label, **style)
        handles.append(line)
    for ax, title, ylabel in (
        (ax_j, "(a) Energy per epoch", "energy per epoch, all phases [J]"),
        (ax_s, "(b) Training energy per sample", "train J/sample [J]"),
    ):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    _plot_phase_bars(ax_p, runs, colours)
    fig.tight_layout()
    if handles:
        fig.legend(handles, [h.get_label() for h in handles], loc="upper center",
                   bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 4), frameon=False)
    return fig


def _plot_phase_bars(ax: Any, runs: Sequence[_PlotRun], colours: Sequence[str]) -> None:
    """Bars of the run totals' J/sample per phase, one group per phase (hatched: estimates)."""
    present = {p for r in runs for p in r.totals_jps}
    phases = [p for p in _PHASE_ORDER if p in present] + sorted(present - set(_PHASE_ORDER))
    width = 0.8 / max(1, len(runs))
    for i, (run, colour) in enumerate(zip(runs, colours)):
        for j, phase in enumerate(phases):
            x = j - 0.4 + width * (i + 0.5)
            value = run.totals_jps.get(phase)
            if value is None:
                if phase in run.totals_jps:  # known phase, unknown J/sample: say so, not 0
                    ax.text(x, 0, UNKNOWN, rotation=90, ha="center", va="bottom", fontsize=7,
                            color=colour)
                continue
            ax.bar(x, value, width=width * 0.95, color=colour if not run.estimated else "white",
                   edgecolor=colour, linewidth=1.2,
                   hatch=_ESTIMATED_HATCH if run.estimated else None, label=run.label)
    ax.set_xticks(range(len(phases)))
    ax.set_xticklabels(phases)
    ax.set_xlim(-0.6, len(phases) - 0.4)
    ax.set_ylabel("J/sample, run total [J]")
    ax.set_title("(c) Energy per sample by phase")
    ax.grid(alpha=0.3, axis="y")


def plot_runs(summaries: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Draw :func:`report_figure` for one or more runs and write it to ``path``.

    Args:
        summaries: run summaries.
        path: the PNG (or any format matplotlib writes: ``.pdf``, ``.svg``) to write.

    Returns:
        The path written.

    Raises:
        ConfigurationError: matplotlib is not installed, the values cannot be drawn (an
            overflow in matplotlib's axis maths, e.g. 1e308 J) or the file cannot be written.
    """
    import numpy as np

    out = Path(path)
    try:
        with np.errstate(over="raise"):  # 1e308 J: an overflow in the axis maths, not a warning
            fig = report_figure(summaries)
            fig.savefig(out, dpi=150, bbox_inches="tight")
    except OSError as e:
        raise ConfigurationError(
            f"report: cannot write plot {str(path)!r}: {e.strerror or e}") from None
    except (ArithmeticError, ValueError) as e:
        raise ConfigurationError(
            f"report: cannot draw plot {str(path)!r}: {e} (joules this large cannot be drawn; "
            "check the run summaries, or use --csv)") from None
    return out
