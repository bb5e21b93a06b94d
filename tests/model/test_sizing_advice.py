"""Sizing advice: near/far by the 1x-2x rule, resize options, text and JSON forms."""

from __future__ import annotations

import json

import pytest

from wattwise.errors import ConfigurationError
from wattwise.model.advise import advise, footprints
from wattwise.model.hierarchy import BUTTER_E_CPU, BUTTER_E_GPU
from wattwise.model.working_sets import WorkingSets, mlp_working_sets


def test_far_network_gets_shrink_and_grow_options_into_the_band():
    ws = mlp_working_sets([512, 512, 10], 784, 256, n_obs=60000)
    a = advise(ws, BUTTER_E_CPU, n_samples=60000)
    assert a.far
    assert [lr.level for lr in a.levels] == ["L1", "L2", "L3"]  # caches only
    assert [lr.near for lr in a.levels] == [False, False, False]
    l2 = a.levels[1]
    assert l2.ratio == pytest.approx(l2.footprint_bytes / (32 * 1024 + 1024**2))
    assert l2.ratio > 2
    shrink, grow = a.options
    assert (shrink.direction, shrink.level) == ("shrink", "L2")
    assert (grow.direction, grow.level) == ("grow", "L3")
    assert shrink.width_scale < 1 < grow.width_scale
    assert shrink.ntp < ws.ntp < grow.ntp
    for o in a.options:
        assert o.in_band and 1 <= o.ratio <= 2
        assert o.widths is not None and o.widths[-1] == 10
        assert o.joules_per_sample > 0
        # the option really lands there when re-advised
        again = advise(mlp_working_sets(list(o.widths), 784, 256), BUTTER_E_CPU)
        assert not again.far
    assert a.joules_per_epoch == pytest.approx(235 * a.joules_per_sample * 256)


def test_near_network_has_no_options():
    # choose a width whose b lands at ~1.3x of the GPU L1 (112 KiB per SM)
    ws = mlp_working_sets([96, 96, 10], 64, 256)
    a = advise(ws, BUTTER_E_GPU)
    r = {lr.level: lr for lr in a.levels}
    assert r["L1"].near and 1 <= r["L1"].ratio <= 2
    assert not a.far and a.near and a.options == ()
    assert "near a cache boundary (L1)" in a.text()


def test_tiny_network_only_grows():
    a = advise(mlp_working_sets([4, 1], 4, 8), BUTTER_E_GPU)
    assert a.far and [o.direction for o in a.options] == ["grow"]
    assert a.options[0].level == "L1"


def test_text_and_json_forms():
    a = advise(mlp_working_sets([512, 512, 10], 784, 256), BUTTER_E_GPU)
    t = a.text()
    for s in ("MiB", "KiB", "mJ per sample (estimate)", "FAR", "vs L1", "option: shrink"):
        assert s in t
    j = json.loads(json.dumps(a.to_json()))
    assert j["far"] is True and j["set"] == "b"
    assert WorkingSets.from_json(j["working_sets"]) == a.working_sets
    assert j["hierarchy"]["name"] == "butter-e-gpu"
    assert len(j["features"]["forward"]) == 12 and j["features"]["names"][0] == "k_e"
    assert j["options"][0]["estimated_joules_per_sample"] > 0
    assert any("dataset size unknown" in n for n in j["notes"])


def test_bad_arguments():
    ws = mlp_working_sets([8, 2], 4, 16)
    with pytest.raises(ConfigurationError, match="set_name='x'"):
        advise(ws, BUTTER_E_GPU, set_name="x")
    with pytest.raises(ConfigurationError, match=r"band=\(2, 1\)"):
        advise(ws, BUTTER_E_GPU, band=(2, 1))
    with pytest.raises(ConfigurationError, match=r"widths=\[0\]"):
        mlp_working_sets([0], 4, 16)


def test_footprints_forward_set():
    ws = mlp_working_sets([64, 10], 32, 32)
    fb = footprints(ws, BUTTER_E_GPU, "b")
    ff = footprints(ws, BUTTER_E_GPU, "f")
    assert all(b.footprint_bytes > f.footprint_bytes for b, f in zip(fb, ff))


def test_model_and_hardware_import_no_heavy_stack():
    import subprocess
    import sys

    code = ("import sys, wattwise, wattwise.model, wattwise.model.butter_e, wattwise.model.fit, "
            "wattwise.hardware, wattwise.sizing, wattwise.introspect, wattwise.cli.advise, "
            "wattwise.cli.fit\n"
            "heavy = [m for m in ('torch', 'keras', 'tensorflow', 'jax', 'scipy', 'matplotlib', "
            "'pynvml', 'codecarbon', 'lightning') if m in sys.modules]\n"
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
