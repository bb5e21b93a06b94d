"""Calibrations: energy-model coefficients fitted on this machine, stored with their provenance.

``wattwise calibrate`` trains small MLPs on this machine, fits the coefficients
(:func:`fit_calibration`) and stores them (:func:`save_calibration`) in the user's config
folder (``platformdirs.user_config_dir("wattwise")``; the environment variable
``WATTWISE_CONFIG_DIR`` overrides it). A calibration is keyed by the hardware identity
(CPU model or GPU name plus the cache sizes, :func:`hardware_identity`), so a file written on
another machine is never used silently. :func:`choose_coefficients` is what the sizing advice
uses when no coefficients are given: this machine's calibration, else the preset for the
hardware kind; :func:`describe_coefficients` is the label the advice shows ("calibrated on this
machine (date, meter)" or "uncalibrated: ..."). A missing file is silent; a corrupt one is one
warning and the preset (it never breaks training).

File format (JSON): the coefficients file (:meth:`Coefficients.to_json`) plus
``"provenance"``: ``{"format": "wattwise-calibration/1", "date", "meters", "energy"
("measured" or "estimated"), "cv_error", "n_points", "method", "hardware" (the identity),
"wattwise"}``.

Example:
    >>> from wattwise.calibration import fit_calibration
    >>> from wattwise.model.coefficients import preset
    >>> base = preset("cpu")
    >>> rows = [[0.0, 10.0 * n, 1e-3 * n] + [0.0] * 9 for n in (1, 2, 4, 8)]
    >>> meas = [0.5 * sum(x * k for x, k in zip(r, base.values)) for r in rows]
    >>> fit = fit_calibration(rows, meas, base)
    >>> round(fit.coefficients.k_p / base.k_p, 3)
    0.5
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wattwise._record import record
from wattwise._warn import warn
from wattwise.errors import ConfigurationError, WattwiseWarning
from wattwise.model.coefficients import Coefficients, preset
from wattwise.model.hierarchy import Hierarchy

__all__ = [
    "CALIBRATION_FORMAT",
    "CONFIG_DIR_ENV",
    "Calibration",
    "CalibrationFit",
    "calibration_path",
    "choose_coefficients",
    "config_dir",
    "describe_coefficients",
    "fit_calibration",
    "hardware_identity",
    "load_calibration",
    "make_calibration",
    "save_calibration",
]

CALIBRATION_FORMAT = "wattwise-calibration/1"
CONFIG_DIR_ENV = "WATTWISE_CONFIG_DIR"
SOURCE_PREFIX = "wattwise calibrate"
"""Every calibration's ``Coefficients.source`` starts with this."""

COMPUTE_TERMS = (1, 2, 3)
"""Indices of k_p (J/pass), k_o (J/GFLOP), k_d (J/layer/pass): the per-step terms."""
MEMORY_TERMS = tuple(range(4, 12))
"""Indices of a1..a4 (J/access) and m1..m4 (J/MiB): the memory terms."""


def config_dir() -> Path:
    """The folder of wattwise's user files: ``$WATTWISE_CONFIG_DIR`` when set, else
    ``platformdirs.user_config_dir("wattwise")``."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env)
    if sys.platform == "linux" and not (os.environ.get("ANDROID_DATA") == "/data"
                                        and os.environ.get("ANDROID_ROOT") == "/system"):
        # platformdirs' Unix rule, without its import (~4 ms, on the sizing check's path)
        base = os.environ.get("XDG_CONFIG_HOME", "").strip() or os.path.expanduser("~/.config")
        return Path(base) / "wattwise"
    import platformdirs

    return Path(platformdirs.user_config_dir("wattwise", appauthor=False))


def _cpu_model(cpuinfo_path: str | os.PathLike[str]) -> str | None:
    try:
        text = Path(cpuinfo_path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "cpu model") and value.strip():
            return value.strip()
    return None


def hardware_identity(hierarchy: Hierarchy, *,
                      cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo") -> dict[str, Any]:
    """What identifies this machine for a calibration: the hardware kind, the CPU model (from
    ``cpuinfo_path``; for a CPU hierarchy) or the hierarchy's name (a GPU's name), and every
    cache level's size in bytes and unit count (main memory left out: its size does not change
    the energy per access)."""
    model = _cpu_model(cpuinfo_path) if hierarchy.kind == "cpu" else hierarchy.name
    return {
        "kind": hierarchy.kind,
        "model": model or hierarchy.name,
        "caches": [[lv.name, int(lv.bytes_per_unit), int(lv.units)] for lv in hierarchy.caches],
    }


def _key(identity: Mapping[str, Any]) -> str:
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def calibration_path(hierarchy: Hierarchy, *, directory: str | os.PathLike[str] | None = None,
                     cpuinfo_path: str | os.PathLike[str] = "/proc/cpuinfo") -> Path:
    """Where the calibration for ``hierarchy`` lives: ``<config dir>/calibration-<kind>-<key>.json``
    with ``key`` a hash of :func:`hardware_identity`."""
    ident = hardware_identity(hierarchy, cpuinfo_path=cpuinfo_path)
    folder = Path(directory) if directory is not None else config_dir()
    return folder / f"calibration-{hierarchy.kind}-{_key(ident)}.json"


@record
class Calibration:
    """Coefficients fitted on one machine, and how.

    Attributes:
        coefficients: the fitted coefficients (``source`` starts with ``"wattwise calibrate"``,
            ``cv_error`` set when it could be cross-validated).
        date: when, ISO 8601 UTC (``"2026-11-30T19:40:00Z"``).
        meters: the meters that measured (names, e.g. ``["codecarbon"]``).
        energy: ``"measured"`` (hardware counters) or ``"estimated"`` (codecarbon's model).
        hardware: :func:`hardware_identity` of the machine.
        n_points: sweep points fitted.
        method: how the coefficients were fitted (free text).
        points: the fitted points, ``(12 features, joules)`` each, so that ``wattwise fit
            --update-calibration`` can refit them together with new runs.
    """

    coefficients: Coefficients
    date: str
    meters: tuple[str, ...]
    energy: str
    hardware: Mapping[str, Any]
    n_points: int
    method: str
    points: tuple[tuple[tuple[float, ...], float], ...] = ()

    def __post_init__(self) -> None:
        if self.energy not in ("measured", "estimated"):
            raise ConfigurationError(f"Calibration(energy={self.energy!r}) must be 'measured' "
                                     "or 'estimated'")

    @property
    def label(self) -> str:
        """``"calibrated on this machine (2026-11-30, codecarbon estimates; typical error ±8 %)"``."""
        what = "estimates" if self.energy == "estimated" else "measured"
        return (f"calibrated on this machine ({self.date[:10]}, {'+'.join(self.meters) or '?'} "
                f"{what}; {_typical(self.coefficients.cv_error)})")

    def to_json(self) -> dict[str, Any]:
        """The file's JSON form: the coefficients object plus ``provenance``."""
        from wattwise import __version__

        d = self.coefficients.to_json()
        d["provenance"] = {
            "format": CALIBRATION_FORMAT, "date": self.date, "meters": list(self.meters),
            "energy": self.energy, "cv_error": self.coefficients.cv_error,
            "n_points": self.n_points, "method": self.method, "hardware": dict(self.hardware),
            "wattwise": __version__,
            "points": [{"features": list(f), "joules": j} for f, j in self.points],
        }
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Calibration:
        """Inverse of :meth:`to_json`; ConfigurationError naming what is wrong."""
        coefs = Coefficients.from_json(d)
        prov = d.get("provenance")
        if not isinstance(prov, Mapping) or prov.get("format") != CALIBRATION_FORMAT:
            raise ConfigurationError(f"provenance is {prov!r:.80}; expected an object with "
                                     f"format {CALIBRATION_FORMAT!r}")
        meters = prov.get("meters")
        hardware = prov.get("hardware")
        n_points = prov.get("n_points")
        if not (isinstance(meters, list) and all(isinstance(m, str) for m in meters)):
            raise ConfigurationError(f"provenance.meters is {meters!r:.80}; expected a list of names")
        if not isinstance(hardware, Mapping):
            raise ConfigurationError(f"provenance.hardware is {hardware!r:.80}; expected an object")
        if isinstance(n_points, bool) or not isinstance(n_points, int) or n_points < 1:
            raise ConfigurationError(f"provenance.n_points is {n_points!r:.40}; expected an "
                                     "integer >= 1")
        points = []
        for i, pt in enumerate(prov.get("points") or []):
            feats = pt.get("features") if isinstance(pt, Mapping) else None
            j = pt.get("joules") if isinstance(pt, Mapping) else None
            if not (isinstance(feats, list) and len(feats) == 12
                    and all(_is_number(x) and x >= 0 for x in feats)
                    and isinstance(j, (int, float)) and _is_number(j) and j > 0):
                raise ConfigurationError(f"provenance.points[{i}] is {pt!r:.80}; expected "
                                         "{\"features\": 12 numbers >= 0, \"joules\": > 0}")
            points.append((tuple(float(x) for x in feats), float(j)))
        return cls(coefs, str(prov.get("date", "")), tuple(meters), str(prov.get("energy")),
                   dict(hardware), n_points, str(prov.get("method", "")), tuple(points))


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def save_calibration(calibration: Calibration, hierarchy: Hierarchy, *,
                     directory: str | os.PathLike[str] | None = None) -> Path:
    """Write the calibration for ``hierarchy`` (creating the config folder); returns the path.

    Raises:
        OSError: the folder or file cannot be written.
    """
    path = calibration_path(hierarchy, directory=directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(calibration.to_json(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


_warned: set[str] = set()


def load_calibration(hierarchy: Hierarchy, *,
                     directory: str | os.PathLike[str] | None = None) -> Calibration | None:
    """This machine's calibration, or None when there is none. A file that cannot be read or
    is not a calibration for this hardware gives one warning (per file) and None."""
    try:
        path = calibration_path(hierarchy, directory=directory)
    except Exception as e:  # noqa: BLE001 - no config folder (platformdirs missing): no calibration
        _warn_once("config", f"wattwise: cannot locate the calibration folder ({e}); using the "
                   "preset coefficients")
        return None
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, Mapping):
            raise ConfigurationError(f"is {type(data).__name__}; expected a JSON object")
        cal = Calibration.from_json(data)
        if cal.coefficients.hardware != hierarchy.kind:
            raise ConfigurationError(f"fitted on {cal.coefficients.hardware!r}, this is "
                                     f"{hierarchy.kind!r}")
        if dict(cal.hardware) != hardware_identity(hierarchy):
            raise ConfigurationError("its hardware identity differs from this machine's")
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, ConfigurationError) as e:
        _warn_once(str(path), f"wattwise: ignoring the calibration file {str(path)!r} ({e}); "
                   "using the preset coefficients. Fix: run `wattwise calibrate` again")
        return None
    return cal


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warn(message, WattwiseWarning)


def choose_coefficients(hierarchy: Hierarchy, *,
                        directory: str | os.PathLike[str] | None = None) -> Coefficients:
    """The coefficients the sizing advice uses when none are given: this machine's calibration
    when there is one, else ``preset(hierarchy.kind)``."""
    cal = load_calibration(hierarchy, directory=directory)
    return cal.coefficients if cal is not None else preset(hierarchy.kind)


def _typical(cv_error: float | None) -> str:
    if cv_error is None or not math.isfinite(cv_error):
        return "typical error unknown"
    return f"typical error ±{100 * cv_error:.0f} %"


def describe_coefficients(coefficients: Coefficients, hierarchy: Hierarchy, *,
                          directory: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Where the advice's coefficients come from, for the advice record and its text:
    ``{"source", "calibrated", "label", "cv_error"}``. ``calibrated`` is True only for this
    machine's stored calibration."""
    cal = None
    if coefficients.source.startswith(SOURCE_PREFIX):
        cal = load_calibration(hierarchy, directory=directory)
    if cal is not None and cal.coefficients.values == coefficients.values:
        label = cal.label
        calibrated = True
    elif coefficients.source.startswith(SOURCE_PREFIX):
        label = (f"calibrated, but not this machine's stored calibration: {coefficients.source} "
                 f"({_typical(coefficients.cv_error)})")
        calibrated = False
    else:
        name = coefficients.source or f"the {coefficients.hardware} preset"
        label = (f"uncalibrated: coefficients of {name}, {_typical(coefficients.cv_error)}; "
                 "calibrate this machine with `wattwise calibrate --quick` (about 3 min)")
        calibrated = False
    return {"source": coefficients.source, "calibrated": calibrated, "label": label,
            "cv_error": coefficients.cv_error}


# ---------------------------------------------------------------------------------------------
# fitting


@record
class CalibrationFit:
    """A calibration fit.

    Attributes:
        coefficients: the fitted coefficients (``cv_error`` set when cross-validated).
        method: ``"scale"`` (one factor on the base) or ``"compute+memory"`` (one factor on
            the per-step terms, one on the memory terms).
        scales: the factors, by group name.
        fit_error: in-sample mean ``|pred/meas - 1|``.
        cv_error: leave-one-out mean ``|pred/meas - 1|`` (None under 3 points).
        ratios: in-sample ``pred/meas`` per point.
    """

    coefficients: Coefficients
    method: str
    scales: Mapping[str, float]
    fit_error: float
    cv_error: float | None
    ratios: tuple[float, ...]


def _group_sums(row: Sequence[float], base: Coefficients,
                groups: Sequence[Sequence[int]]) -> list[float]:
    return [sum(row[j] * base.values[j] for j in g) for g in groups]


def _fit_scales(rows: Sequence[Sequence[float]], meas: Sequence[float], base: Coefficients,
                groups: Sequence[Sequence[int]]) -> list[float]:
    """Non-negative factors per group minimising sum(log(pred/meas)^2)."""
    z = [_group_sums(r, base, groups) for r in rows]
    if len(groups) == 1:
        logs = [math.log(m / zi[0]) for zi, m in zip(z, meas) if zi[0] > 0]
        if not logs:
            raise ConfigurationError("calibration: the base coefficients predict 0 J for every point")
        return [math.exp(sum(logs) / len(logs))]
    from wattwise.model.fit import fit_coefficients

    padded = [[0.0, *zi] + [0.0] * (11 - len(zi)) for zi in z]
    k = fit_coefficients(padded, list(meas), base.hardware).coefficients.values
    return [float(k[1 + i]) for i in range(len(groups))]


def _scaled(base: Coefficients, groups: Sequence[Sequence[int]],
            scales: Sequence[float]) -> list[float]:
    vals = list(base.values)
    for g, s in zip(groups, scales):
        for j in g:
            vals[j] = base.values[j] * s
    return vals


def _ratios(rows: Sequence[Sequence[float]], meas: Sequence[float],
            values: Sequence[float]) -> list[float]:
    return [sum(x * k for x, k in zip(r, values)) / m for r, m in zip(rows, meas)]


def fit_calibration(rows: Sequence[Sequence[float]], measured_joules: Sequence[float],
                    base: Coefficients, *, source: str = SOURCE_PREFIX) -> CalibrationFit:
    """Fit few free coefficients to a calibration sweep, so that a handful of points pins them.

    Two candidate models, both starting from ``base`` (the preset): *scale* multiplies all 12
    coefficients by one factor; *compute+memory* gives the per-step terms (``k_p``, ``k_o``,
    ``k_d``) one factor and the memory terms (``a1..a4``, ``m1..m4``) another (non-negative,
    least squares on log ratios, :func:`wattwise.model.fit.fit_coefficients`). The one with
    the lower leave-one-out error wins (scale under 4 points); ``k_e`` (per run) is kept.

    Args:
        rows: one 12-entry feature row per point (``E = row · k``).
        measured_joules: joules per point (> 0).
        base: the coefficients to start from (``preset(kind)``).
        source: the fitted coefficients' ``source`` text.

    Returns:
        :class:`CalibrationFit`.
    """
    if len(rows) != len(measured_joules) or not rows:
        raise ConfigurationError(f"fit_calibration: {len(rows)} rows and "
                                 f"{len(measured_joules)} energies; expected as many, >= 1")
    for i, m in enumerate(measured_joules):
        if not (isinstance(m, (int, float)) and 0 < m < math.inf):
            raise ConfigurationError(f"fit_calibration: energy of point {i} is {m!r}; expected "
                                     "joules > 0")
    candidates: list[tuple[str, tuple[tuple[int, ...], ...]]] = [
        ("scale", (tuple(range(1, 12)),))]
    if len(rows) >= 4:
        candidates.append(("compute+memory", (COMPUTE_TERMS, MEMORY_TERMS)))
    best: CalibrationFit | None = None
    for method, groups in candidates:
        try:
            scales = _fit_scales(rows, measured_joules, base, groups)
            cv = _loo(rows, measured_joules, base, groups) if len(rows) >= 3 else None
        except ConfigurationError:
            if method == "scale":
                raise
            continue
        vals = _scaled(base, groups, scales)
        ratios = _ratios(rows, measured_joules, vals)
        fe = sum(abs(r - 1) for r in ratios) / len(ratios)
        names = ("all",) if len(groups) == 1 else ("compute", "memory")
        coefs = base.with_values(vals, source=f"{source} ({method} of {base.source or 'preset'})",
                                 fit_error=fe, n_runs=len(rows), cv_error=cv)
        fit = CalibrationFit(coefs, method, dict(zip(names, scales)), fe, cv, tuple(ratios))
        score = cv if cv is not None else fe
        best_score = None if best is None else (best.cv_error if best.cv_error is not None
                                                else best.fit_error)
        if best_score is None or score < best_score:
            best = fit
    assert best is not None
    return best


def _loo(rows: Sequence[Sequence[float]], meas: Sequence[float], base: Coefficients,
         groups: Sequence[Sequence[int]]) -> float:
    errs = []
    for i in range(len(rows)):
        keep = [j for j in range(len(rows)) if j != i]
        scales = _fit_scales([rows[j] for j in keep], [meas[j] for j in keep], base, groups)
        vals = _scaled(base, groups, scales)
        errs.append(abs(_ratios([rows[i]], [meas[i]], vals)[0] - 1))
    return sum(errs) / len(errs)


def today_utc() -> str:
    """Now, ISO 8601 UTC to the second (``"2026-11-30T19:40:00Z"``)."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_calibration(rows: Sequence[Sequence[float]], measured_joules: Sequence[float],
                     hierarchy: Hierarchy, *, meters: Sequence[str], energy: str,
                     what: str = "sweep") -> tuple[Calibration, CalibrationFit]:
    """Fit (:func:`fit_calibration` from ``preset(hierarchy.kind)``) and wrap the result as this
    machine's :class:`Calibration`, dated now; ``what`` says what was fitted (for ``method``)."""
    date = today_utc()
    meter_text = "+".join(meters) or "?"
    fit = fit_calibration(rows, measured_joules, preset(hierarchy.kind),
                          source=f"{SOURCE_PREFIX} {date[:10]} ({meter_text}, {energy})")
    scales = ", ".join(f"{k} x{v:.3g}" for k, v in fit.scales.items())
    cal = Calibration(fit.coefficients, date, tuple(meters), energy,
                      hardware_identity(hierarchy), len(rows),
                      f"{fit.method} of preset({hierarchy.kind!r}) ({scales}) on {len(rows)} "
                      f"{what} point(s); leave-one-out CV",
                      tuple((tuple(float(x) for x in r), float(j))
                            for r, j in zip(rows, measured_joules)))
    return cal, fit
