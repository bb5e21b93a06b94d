"""``TrackerConfig``: every setting of a run, validated once, frozen.

:class:`~wattwise.EnergyTracker` and both callbacks build one at construction, so a bad argument
raises there (naming the argument, the value and the fix), never inside a training loop. The
callbacks add what only they know at run time (rank, GPU, log folder) with
:func:`dataclasses.replace`, which validates again.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import math
import os
from collections.abc import Sequence
from dataclasses import field
from os import PathLike
from typing import Any, Literal

from wattwise._record import record
from wattwise.errors import ConfigurationError
from wattwise.meters.base import Meter
from wattwise.meters.factory import METER_NAMES

__all__ = [
    "CallbackOptions",
    "RunContext",
    "TrackerConfig",
    "carbon_of_country",
    "check_summary_path",
]

#: The longest idle baseline a run may measure at its start, in seconds.
MAX_IDLE_BASELINE_S = 3600.0


def _seconds(owner: str, name: str, value: object) -> float:
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    if not ok or value < 0:  # type: ignore[operator]
        raise ConfigurationError(
            f"{owner}({name}={value!r}): expected a finite number of seconds >= 0"
        )
    return float(value)  # type: ignore[arg-type]


def check_summary_path(owner: str, path: str | PathLike[str]) -> None:
    """Refuse a summary path that exists and is a symlink or not a regular file (a device
    node, a FIFO, a folder): the summary is written by replacing the file, which would destroy
    what is there."""
    p = os.fspath(path)
    if os.path.islink(p) or (os.path.lexists(p) and not os.path.isfile(p)):
        kind = "a symbolic link" if os.path.islink(p) else "not a regular file"
        raise ConfigurationError(
            f"{owner}(summary_path={p!r}): exists and is {kind}; the run summary replaces the "
            "file at that path, so pass the path of a regular file (or of none yet)"
        )


def _meters(owner: str, meters: object) -> str | tuple[str | Meter, ...]:
    if isinstance(meters, str):
        if meters == "auto":
            return "auto"
        if meters in METER_NAMES:
            return (meters,)
    elif isinstance(meters, Sequence) and len(meters) > 0:
        out: list[str | Meter] = []
        for m in meters:
            if isinstance(m, Meter):
                if any(m is x for x in out):
                    raise ConfigurationError(f"{owner}(meters=...): meter {m!r} is given twice")
            elif not (isinstance(m, str) and m in METER_NAMES and m not in out):
                raise ConfigurationError(
                    f"{owner}(meters=...): entry {m!r} is not a Meter instance nor a distinct "
                    f"meter name from {METER_NAMES!r}"
                )
            out.append(m)
        return tuple(out)
    raise ConfigurationError(
        f"{owner}(meters={meters!r}): expected 'auto', a non-empty list of meter names from "
        f"{METER_NAMES!r}, or Meter instances"
    )


@record
class TrackerConfig:
    """The settings of :class:`~wattwise.EnergyTracker` (see it for what each means).

    ``summary_path="auto"`` means "the log folder the framework gives at run time"; without one
    no summary is written (said once). ``log_every_n_steps`` turns on step-level readings.
    ``on_error="warn"`` (the callbacks): an error inside measurement becomes one warning and
    measurement stops, training goes on; ``"raise"`` (plain tracker use): errors propagate.
    ``owner`` names the class in error messages.
    """

    meters: str | tuple[str | Meter, ...] = "auto"
    min_window_s: float = 1.0
    summary_path: str | None = None
    idle_baseline_s: float = 0.0
    carbon_intensity_g_per_kwh: float | None = None
    country_iso_code: str | None = None
    node_meters: bool = True
    gpu_devices: tuple[int, ...] | None = None
    run_name: str | None = None
    log_every_n_steps: int | None = None
    on_error: Literal["raise", "warn"] = "raise"
    owner: str = field(default="EnergyTracker", compare=False, repr=False)

    def __post_init__(self) -> None:
        o = self.owner
        set_ = object.__setattr__
        set_(self, "meters", _meters(o, self.meters))
        set_(self, "min_window_s", _seconds(o, "min_window_s", self.min_window_s))
        set_(self, "idle_baseline_s", _seconds(o, "idle_baseline_s", self.idle_baseline_s))
        if self.idle_baseline_s > MAX_IDLE_BASELINE_S:
            raise ConfigurationError(
                f"{o}(idle_baseline_s={self.idle_baseline_s!r}): expected at most "
                f"{MAX_IDLE_BASELINE_S:g} s (the run waits that long at its start); a few "
                "seconds are enough, e.g. idle_baseline_s=5.0")
        path: Any = self.summary_path
        if path is not None and not (isinstance(path, (str, PathLike)) and os.fspath(path)):
            raise ConfigurationError(
                f"{o}(summary_path={path!r}): expected None, 'auto' or a file path such as "
                "'runs/energy.json'"
            )
        set_(self, "summary_path", None if path is None else os.fspath(path))
        if self.summary_path not in (None, "auto"):
            check_summary_path(o, self.summary_path)  # type: ignore[arg-type]
        self._check_carbon()
        for name in ("node_meters",):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{o}({name}={getattr(self, name)!r}): expected a bool")
        g: Any = self.gpu_devices
        if g is not None:
            if isinstance(g, (str, bytes)) or not isinstance(g, Sequence) or not all(
                isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in g
            ):
                raise ConfigurationError(
                    f"{o}(gpu_devices={g!r}): expected None or a list of CUDA device indices "
                    ">= 0 such as [0, 1]"
                )
            set_(self, "gpu_devices", tuple(g))
        if self.run_name is not None and not isinstance(self.run_name, str):
            raise ConfigurationError(f"{o}(run_name={self.run_name!r}): expected a str or None")
        n: Any = self.log_every_n_steps
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigurationError(
                f"{o}(log_every_n_steps={n!r}): expected None (no step-level metrics) or an "
                "int >= 1 (log every that many training batches)"
            )
        if self.on_error not in ("raise", "warn"):
            raise ConfigurationError(f"{o}(on_error={self.on_error!r}): expected 'raise' or 'warn'")

    def _check_carbon(self) -> None:
        o, c, code = self.owner, self.carbon_intensity_g_per_kwh, self.country_iso_code
        if c is not None and code is not None:
            raise ConfigurationError(
                f"{o}(carbon_intensity_g_per_kwh={c!r}, country_iso_code={code!r}): give one "
                "of them, not both"
            )
        if c is not None and (
            isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c) or c < 0
        ):
            raise ConfigurationError(
                f"{o}(carbon_intensity_g_per_kwh={c!r}): expected a finite number of grams "
                "CO2eq per kWh >= 0 (e.g. 400.0)"
            )
        if code is not None:
            if not (isinstance(code, str) and len(code) == 3 and code.isascii() and code.isalpha()):
                raise ConfigurationError(
                    f"{o}(country_iso_code={code!r}): expected an ISO 3166 alpha-3 code such "
                    "as 'FRA' or 'USA'"
                )
            object.__setattr__(self, "country_iso_code", code.upper())
            carbon_of_country(code, o)  # known to the offline data (raises, naming the fix)

    @property
    def meter_names(self) -> list[str] | Literal["auto"]:
        """The meters to open by name (``"auto"`` or names); instances are in :attr:`instances`."""
        if self.meters == "auto":
            return "auto"
        return [m for m in self.meters if isinstance(m, str)]

    @property
    def instances(self) -> list[Meter]:
        """The meter instances the user passed (they belong to the user: never closed by us)."""
        return [m for m in self.meters if isinstance(m, Meter)]


@record
class RunContext:
    """What a callback knows about this process when a run starts.

    Attributes:
        global_rank: this process's rank; rank N > 0 writes ``<stem>.rankN<suffix>``.
        local_rank: its rank on this node; node-wide meters are read on local rank 0 only.
        world_size: processes in the run.
        gpu_devices: the CUDA devices this process uses (for NVML); None = the config's.
        log_dir: the framework's log folder, where ``summary_path="auto"`` writes.
    """

    global_rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    gpu_devices: tuple[int, ...] | None = None
    log_dir: str | None = None

    @classmethod
    def for_process(cls, *, global_rank: int, local_rank: int, world_size: int,
                    cuda_device: int | None, log_dir: str | None) -> RunContext:
        """The context of one process of a (possibly distributed) run: NVML reads the CUDA
        device it trains on; a CPU process other than local rank 0 reads no GPU (local rank 0
        reads the node's); a single process reads every visible GPU."""
        gpus: tuple[int, ...] | None = None
        if cuda_device is not None:
            gpus = (cuda_device,)
        elif world_size > 1 and local_rank != 0:
            gpus = ()
        return cls(global_rank, local_rank, world_size, gpus, log_dir)


_ENERGY_MIX = ("data", "private_infra", "global_energy_mix.json")


@functools.lru_cache(maxsize=1)
def _energy_mix() -> dict[str, Any] | None:
    """codecarbon's offline country table, read from its data file without importing
    codecarbon (which takes a second); None when codecarbon is not installed."""
    spec = importlib.util.find_spec("codecarbon")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), *_ENERGY_MIX)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def carbon_of_country(code: str, owner: str = "EnergyTracker") -> float:
    """Grams CO2eq per kWh of ISO 3166 alpha-3 ``code`` from codecarbon's offline data.

    Raises:
        ConfigurationError: codecarbon is not installed, or ``code`` is not in its data.
    """
    data = _energy_mix()
    if data is None:
        raise ConfigurationError(
            f"{owner}(country_iso_code={code!r}) needs codecarbon's offline data: install it "
            "with `pip install 'wattwise[codecarbon]'` or pass carbon_intensity_g_per_kwh="
            "<g per kWh> instead"
        )
    entry = data.get(code.upper())
    value = entry.get("carbon_intensity") if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        examples = ", ".join(repr(c) for c in ("FRA", "DEU", "USA") if c in data)
        raise ConfigurationError(
            f"{owner}(country_iso_code={code!r}): not a country in codecarbon's offline data "
            f"({len(data)} countries); expected an ISO 3166 alpha-3 code such as {examples}, "
            "or pass carbon_intensity_g_per_kwh=<g per kWh>"
        )
    return float(value)


@record
class CallbackOptions:
    """What both callbacks add to a :class:`TrackerConfig`: the sizing check and the table.

    Attributes:
        advice: run the sizing check at training start and warn when the backward working
            set is far from a cache boundary.
        coefficients: energy-model coefficients for it (None = bundled).
        hardware: the hardware description for it (``"auto"``).
        print_summary: print the run table at the end of ``fit``.
    """

    advice: bool = True
    coefficients: Any = None
    hardware: Any = "auto"
    print_summary: bool = True

    def __post_init__(self) -> None:
        for name in ("advice", "print_summary"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(
                    f"EnergyMonitor({name}={getattr(self, name)!r}): expected True or False")

    @staticmethod
    def tracker_config(**settings: Any) -> TrackerConfig:
        """A callback's :class:`TrackerConfig`: errors become one warning, never an exception."""
        return TrackerConfig(**settings, on_error="warn", owner="EnergyMonitor")

