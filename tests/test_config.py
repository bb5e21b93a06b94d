"""Tests of wattwise.config: TrackerConfig validation and messages, CallbackOptions, RunContext."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from wattwise.config import CallbackOptions, RunContext, TrackerConfig
from wattwise.errors import ConfigurationError
from wattwise.testing import FakeMeter


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"meters": None}, "meters=None"),
        ({"meters": 123}, "meters=123"),
        ({"meters": []}, "meters=[]"),
        ({"meters": "gpu"}, "meters='gpu'"),
        ({"summary_path": 123}, "summary_path=123"),
        ({"summary_path": ""}, "summary_path=''"),
        ({"min_window_s": -1}, "min_window_s=-1"),
        ({"min_window_s": float("nan")}, "min_window_s=nan"),
        ({"min_window_s": True}, "min_window_s=True"),
        ({"min_window_s": "1"}, "min_window_s='1'"),
        ({"idle_baseline_s": -0.5}, "idle_baseline_s=-0.5"),
        ({"idle_baseline_s": float("inf")}, "idle_baseline_s=inf"),
        ({"idle_baseline_s": 1e12}, "idle_baseline_s=1000000000000.0"),  # was an OverflowError
        ({"idle_baseline_s": 1e7}, "idle_baseline_s=10000000.0"),  # used to hang
        ({"country_iso_code": "ZZZ"}, "country_iso_code='ZZZ'"),
        ({"carbon_intensity_g_per_kwh": 300.0, "country_iso_code": "FRA"},
         "carbon_intensity_g_per_kwh=300.0, country_iso_code='FRA'"),
        ({"carbon_intensity_g_per_kwh": float("nan")}, "carbon_intensity_g_per_kwh=nan"),
        ({"carbon_intensity_g_per_kwh": True}, "carbon_intensity_g_per_kwh=True"),
        ({"country_iso_code": "FR"}, "country_iso_code='FR'"),
        ({"country_iso_code": "F1A"}, "country_iso_code='F1A'"),
        ({"country_iso_code": 250}, "country_iso_code=250"),
        ({"gpu_devices": [0, -1]}, "gpu_devices=[0, -1]"),
        ({"gpu_devices": [0, True]}, "gpu_devices=[0, True]"),
        ({"gpu_devices": "01"}, "gpu_devices='01'"),
        ({"gpu_devices": 0}, "gpu_devices=0"),
        ({"node_meters": 1}, "node_meters=1"),
        ({"run_name": 7}, "run_name=7"),
        ({"log_every_n_steps": 0}, "log_every_n_steps=0"),
        ({"log_every_n_steps": True}, "log_every_n_steps=True"),
        ({"log_every_n_steps": 2.0}, "log_every_n_steps=2.0"),
        ({"on_error": "x"}, "on_error='x'"),
    ],
)
def test_messages_name_owner_argument_and_value(kwargs: dict[str, Any], names: str) -> None:
    """Each bad setting raises ConfigurationError as 'EnergyTracker(<arg>=<value!r>): expected ...'."""
    with pytest.raises(ConfigurationError) as info:
        TrackerConfig(**kwargs)
    message = str(info.value)
    assert message.startswith(f"EnergyTracker({names})"), message
    assert "expected" in message or "not both" in message


@pytest.mark.parametrize(
    "meters, fragment",
    [
        ([3], "entry 3"),
        (["nvml", "nvml"], "entry 'nvml'"),
        (["auto"], "entry 'auto'"),
    ],
)
def test_bad_meter_entries_are_named(meters: list[Any], fragment: str) -> None:
    """A bad entry of the meters list is shown with the valid names."""
    with pytest.raises(ConfigurationError, match=re.escape(fragment)) as info:
        TrackerConfig(meters=meters)
    assert str(info.value).startswith("EnergyTracker(meters=...)")
    assert "'rapl'" in str(info.value)


def test_same_instance_twice_is_refused() -> None:
    """One meter instance listed twice raises, naming it."""
    m = FakeMeter()
    with pytest.raises(ConfigurationError, match="given twice"):
        TrackerConfig(meters=[m, m])


def test_owner_names_the_callback() -> None:
    """Callback configs say EnergyMonitor in their messages and warn on errors."""
    cfg = CallbackOptions.tracker_config(min_window_s=2)
    assert cfg.owner == "EnergyMonitor" and cfg.on_error == "warn"
    with pytest.raises(ConfigurationError, match=re.escape("EnergyMonitor(min_window_s=-3)")):
        CallbackOptions.tracker_config(min_window_s=-3)


def test_values_are_normalised() -> None:
    """Valid values are stored in one form: floats, tuples, fspath strings, upper-case codes."""
    m = FakeMeter()
    cfg = TrackerConfig(meters=["rapl", m], min_window_s=2, idle_baseline_s=0,
                        summary_path=Path("runs") / "e.json", country_iso_code="fra",
                        gpu_devices=[1, 0], log_every_n_steps=5)
    assert cfg.meters == ("rapl", m)
    assert cfg.meter_names == ["rapl"] and cfg.instances == [m]
    assert type(cfg.min_window_s) is float and cfg.min_window_s == 2.0
    assert type(cfg.idle_baseline_s) is float
    assert cfg.summary_path == str(Path("runs") / "e.json")
    assert cfg.country_iso_code == "FRA"
    assert cfg.gpu_devices == (1, 0)
    assert TrackerConfig(meters="nvml").meters == ("nvml",)
    assert TrackerConfig().meters == "auto" and TrackerConfig().meter_names == "auto"
    assert TrackerConfig().instances == []


def test_config_is_frozen() -> None:
    """Settings cannot be changed after construction."""
    cfg = TrackerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.min_window_s = 5.0  # type: ignore[misc]
    assert cfg.min_window_s == 1.0


def test_replace_validates_again() -> None:
    """dataclasses.replace re-runs validation, keeping the owner in messages."""
    cfg = CallbackOptions.tracker_config(meters=["rapl"])
    new = dataclasses.replace(cfg, gpu_devices=[2], node_meters=False)
    assert new.gpu_devices == (2,) and new.node_meters is False
    assert new.meters == ("rapl",) and new.owner == "EnergyMonitor"
    with pytest.raises(ConfigurationError, match=re.escape("EnergyMonitor(gpu_devices=[-2])")):
        dataclasses.replace(cfg, gpu_devices=[-2])
    with pytest.raises(ConfigurationError, match=re.escape("EnergyMonitor(min_window_s=nan)")):
        dataclasses.replace(cfg, min_window_s=float("nan"))


@pytest.mark.parametrize("name", ["advice", "print_summary"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_callback_options_need_bools(name: str, value: Any) -> None:
    """CallbackOptions refuses non-bool advice and print_summary, naming them."""
    with pytest.raises(ConfigurationError,
                       match=re.escape(f"EnergyMonitor({name}={value!r}): expected True or False")):
        CallbackOptions(**{name: value})


def test_callback_options_defaults() -> None:
    """CallbackOptions defaults: advice and table on, bundled coefficients, auto hardware."""
    opts = CallbackOptions()
    assert (opts.advice, opts.print_summary, opts.coefficients, opts.hardware) == (
        True, True, None, "auto")


def test_run_context_defaults() -> None:
    """A RunContext defaults to a single process: rank 0 of 1, no GPU list, no log folder."""
    ctx = RunContext()
    assert (ctx.global_rank, ctx.local_rank, ctx.world_size, ctx.gpu_devices, ctx.log_dir) == (
        0, 0, 1, None, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.global_rank = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "world, local, cuda, gpus",
    [(1, 0, None, None), (1, 0, 3, (3,)), (4, 1, None, ()), (4, 0, None, None), (4, 2, 1, (1,))],
)
def test_run_context_for_process_picks_the_gpus_nvml_reads(
    world: int, local: int, cuda: int | None, gpus: tuple[int, ...] | None
) -> None:
    """The rank's own CUDA device; on CPU DDP only local rank 0 reads the node's GPUs."""
    ctx = RunContext.for_process(global_rank=local, local_rank=local, world_size=world,
                                 cuda_device=cuda, log_dir="logs")
    assert ctx.gpu_devices == gpus and ctx.log_dir == "logs" and ctx.world_size == world
