"""The model's J/sample-against-NTP curve and its cache boundaries (wattwise.model.curves)."""

from __future__ import annotations

import pytest

from wattwise.errors import ConfigurationError
from wattwise.model.advise import footprints
from wattwise.model.coefficients import preset
from wattwise.model.curves import log_spaced, ntp_curve
from wattwise.model.energy import joules_per_sample, pass_features
from wattwise.model.hierarchy import BUTTER_E_CPU, BUTTER_E_GPU
from wattwise.model.shapes import network_widths
from wattwise.model.working_sets import mlp_working_sets

NET = {"shape": "rectangle", "depth": 3, "n_in": 784, "n_out": 10, "batch_size": 256}


def test_log_spaced() -> None:
    assert log_spaced(1000, 100000, 3) == [1000, 10000, 100000]
    assert log_spaced(7, 7, 5) == [7] and log_spaced(3, 900, 1) == [3]
    xs = log_spaced(2, 2**20, 40)
    assert xs == sorted(set(xs)) and xs[0] == 2 and xs[-1] == 2**20
    for bad in ((0, 10, 3), (10, 5, 3), (1, 10, 0)):
        with pytest.raises(ConfigurationError, match="log_spaced"):
            log_spaced(*bad)


def test_points_are_the_model_at_each_size() -> None:
    coef = preset("cpu")
    c = ntp_curve(BUTTER_E_CPU, coef, n_samples=60000, points=30, **NET)
    assert list(c.ntp) == sorted(set(c.ntp)) and len(c.ntp) == len(c.joules_per_sample) > 10
    # the first point is the network of the smallest target size, computed directly
    ws = mlp_working_sets(network_widths("rectangle", 3, 2**6, 784, 10), 784, 256, n_obs=60000)
    assert c.ntp[0] == ws.ntp
    assert c.joules_per_sample[0] == pytest.approx(
        joules_per_sample(pass_features(ws, BUTTER_E_CPU), coef, 256)
    )
    assert c.ratios[0] == {lr.level: lr.ratio for lr in footprints(ws, BUTTER_E_CPU, "b")}


def test_boundaries_are_where_the_set_fills_each_cache() -> None:
    c = ntp_curve(BUTTER_E_CPU, preset("cpu"), points=80, **NET)
    b = c.boundaries
    assert list(b) == ["L1", "L2", "L3"] and b["L1"] < b["L2"] < b["L3"]
    for level, ntp in b.items():
        j = c.ntp.index(ntp)
        assert c.ratios[j - 1][level] < 1.0 <= c.ratios[j][level]
        start, end = c.near_range(level)  # type: ignore[misc]
        assert start == ntp and end is not None and end > ntp
        k = c.ntp.index(end)
        assert c.ratios[k][level] > 2.0 >= c.ratios[k - 1][level]
    assert c.near_range("RAM") is None  # not a cache: never judged
    assert c.to_json()["boundaries"] == b and c.to_json()["ntp"] == list(c.ntp)


def test_forward_set_fills_later_than_backward_and_gpu_has_no_l3() -> None:
    cpu_b = ntp_curve(BUTTER_E_CPU, preset("cpu"), points=60, **NET).boundaries
    cpu_f = ntp_curve(BUTTER_E_CPU, preset("cpu"), set_name="f", points=60, **NET).boundaries
    assert cpu_f["L1"] > cpu_b["L1"]
    gpu = ntp_curve(BUTTER_E_GPU, preset("gpu"), points=60, **NET)
    assert set(gpu.boundaries) <= {"L1", "L2"}


def test_range_limits_are_respected() -> None:
    c = ntp_curve(BUTTER_E_CPU, preset("cpu"), min_size=10_000, max_size=20_000, points=5, **NET)
    assert all(8_000 <= n <= 24_000 for n in c.ntp)  # BUTTER's search lands within ~20 %
