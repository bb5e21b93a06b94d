"""``open_meters``: open the energy meters a run asks for, or every real counter readable here."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypedDict

from wattwise._warn import warn
from wattwise.errors import ConfigurationError, MeterUnavailableError, MeterWarning
from wattwise.meters.base import Meter

__all__ = ["METER_NAMES", "NODE_SCOPE_NAMES", "open_meter", "open_meters"]

#: Names ``open_meters`` accepts (besides ``"auto"``).
METER_NAMES: tuple[str, ...] = ("nvml", "rapl", "pyrapl", "codecarbon")
#: Meters whose counters every process on the node sees.
NODE_SCOPE_NAMES: frozenset[str] = frozenset({"rapl", "pyrapl", "codecarbon"})

_NODE_SKIP_REASON = "skipped: node-wide meter, and node_meters=False (not local rank 0)"


def open_meter(
    name: str,
    *,
    gpu_devices: Sequence[int] | None = None,
    rapl_root: str | os.PathLike[str] = "/sys/class/powercap",
    nvml_library_path: str | os.PathLike[str] | None = None,
) -> Meter:
    """Open one meter by name (one of :data:`METER_NAMES`); arguments as :func:`open_meters`.

    Raises:
        ConfigurationError: an unknown name.
        MeterUnavailableError: the meter cannot open here (the message says how to fix it).
    """
    if name == "nvml":
        from wattwise.meters.nvml import NvmlMeter

        return NvmlMeter(devices=gpu_devices, library_path=nvml_library_path)
    if name == "rapl":
        from wattwise.meters.rapl import RaplMeter

        return RaplMeter(rapl_root)
    if name == "pyrapl":
        from wattwise.meters.pyrapl import PyRaplMeter

        return PyRaplMeter()
    if name == "codecarbon":
        from wattwise.meters.codecarbon import CodeCarbonMeter

        return CodeCarbonMeter()
    raise ConfigurationError(
        f"open_meter(name={name!r}): unknown meter. Valid names: {', '.join(METER_NAMES)}."
    )


def open_meters(
    spec: str | Sequence[str | Meter] = "auto",
    *,
    node_meters: bool = True,
    gpu_devices: Sequence[int] | None = None,
    rapl_root: str | os.PathLike[str] = "/sys/class/powercap",
    nvml_library_path: str | os.PathLike[str] | None = None,
) -> tuple[list[Meter], dict[str, str]]:
    """Open energy meters.

    ``"auto"`` opens every real counter readable here (NVML, then RAPL) and falls back to
    codecarbon's estimate only when none is; it emits one :class:`MeterWarning` that says
    why each counter was unavailable. A list of names (``"nvml"``, ``"rapl"``, ``"pyrapl"``,
    ``"codecarbon"``) and/or open :class:`Meter` instances opens exactly those; a named
    meter that cannot open raises.

    Args:
        spec: ``"auto"``, one name, or a list of names and :class:`Meter` instances.
        node_meters: False skips node-wide meters (RAPL, pyRAPL, codecarbon, and node-scope
            instances), for every process but one per node (local rank != 0).
        gpu_devices: logical CUDA device indices for NVML; None = every visible GPU.
        rapl_root: the powercap sysfs folder for RAPL.
        nvml_library_path: a ``libnvidia-ml`` file for NVML; None = the default library.

    Returns:
        ``(meters, unavailable)``: the open meters (the caller closes them) and, for each
        meter that was not opened, name -> reason.

    Raises:
        ConfigurationError: an unknown name, a repeated name or a value of the wrong type.
        MeterUnavailableError: a meter asked for by name cannot open (meters opened before
            it are closed again).

    Example:
        >>> from wattwise.meters import open_meters
        >>> meters, why_not = open_meters("auto")  # doctest: +SKIP
        >>> [m.name for m in meters], why_not  # doctest: +SKIP
        (['rapl'], {'nvml': 'NvmlMeter(...): no NVML library ...'})
    """
    if not isinstance(node_meters, bool):
        raise ConfigurationError(
            f"open_meters(node_meters={node_meters!r}): expected True or False."
        )
    options: _Options = {
        "gpu_devices": gpu_devices, "rapl_root": rapl_root, "nvml_library_path": nvml_library_path
    }
    if isinstance(spec, str) and spec != "auto":
        spec = [spec]
    if spec == "auto":
        return _open_auto(node_meters, options)
    _check_spec(spec)
    return _open_listed(spec, node_meters, options)


class _Options(TypedDict):
    gpu_devices: Sequence[int] | None
    rapl_root: str | os.PathLike[str]
    nvml_library_path: str | os.PathLike[str] | None


def _check_spec(spec: object) -> None:
    """Raise unless ``spec`` is a list of distinct known names and Meter instances."""
    if isinstance(spec, (bytes, str, Meter)) or not isinstance(spec, Sequence):
        raise ConfigurationError(
            f"open_meters(spec={spec!r}): expected 'auto' or a list of meter names "
            f"({', '.join(METER_NAMES)}) and Meter instances. Fix: e.g. ['nvml', 'rapl']."
        )
    names_seen: set[str] = set()
    for item in spec:
        if isinstance(item, Meter):
            continue
        if not isinstance(item, str) or item not in METER_NAMES:
            hint = " ('auto' cannot be combined with names)" if item == "auto" else ""
            raise ConfigurationError(
                f"open_meters(spec={list(spec)!r}): unknown meter {item!r}{hint}. Valid names: "
                f"{', '.join(METER_NAMES)}, or 'auto' alone."
            )
        if item in names_seen:
            raise ConfigurationError(
                f"open_meters(spec={list(spec)!r}): {item!r} is listed twice. Fix: list it once."
            )
        names_seen.add(item)


def _open_listed(
    spec: Sequence[str | Meter], node_meters: bool, options: _Options
) -> tuple[list[Meter], dict[str, str]]:
    meters: list[Meter] = []
    unavailable: dict[str, str] = {}
    try:
        for item in spec:
            if isinstance(item, Meter):
                if not node_meters and item.scope == "node":
                    unavailable[item.name] = _NODE_SKIP_REASON
                else:
                    meters.append(item)
                continue
            if not node_meters and item in NODE_SCOPE_NAMES:
                unavailable[item] = _NODE_SKIP_REASON
                continue
            meters.append(open_meter(item, **options))
    except BaseException:
        for m in meters:
            if not any(m is x for x in spec):
                m.close()
        raise
    return meters, unavailable


def _open_auto(node_meters: bool, options: _Options) -> tuple[list[Meter], dict[str, str]]:
    meters: list[Meter] = []
    unavailable: dict[str, str] = {}
    counters = ["nvml", "rapl"] if node_meters else ["nvml"]
    if not node_meters:
        unavailable["rapl"] = _NODE_SKIP_REASON
    for name in counters:
        try:
            meters.append(open_meter(name, **options))
        except MeterUnavailableError as e:
            unavailable[name] = str(e)
    fallback = ""
    if not meters:
        if node_meters:
            try:
                meters.append(open_meter("codecarbon", **options))
                fallback = (
                    " Using codecarbon's ESTIMATE instead (estimated=True; not a measurement)."
                )
            except MeterUnavailableError as e:
                unavailable["codecarbon"] = str(e)
                fallback = " No estimate either: energy will be unknown (None)."
        else:
            unavailable["codecarbon"] = _NODE_SKIP_REASON
            fallback = " No device counter on this process: energy comes from local rank 0."
    reasons = {k: v for k, v in unavailable.items() if v != _NODE_SKIP_REASON}
    if reasons:
        warn(
            "wattwise: energy counters unavailable: "
            + " | ".join(f"{k}: {v}" for k, v in reasons.items())
            + fallback,
            MeterWarning,
        )
    return meters, unavailable
