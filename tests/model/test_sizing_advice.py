"""Sizing advice: near/far by the 1x-2x rule, resize options, text and JSON forms."""

from __future__ import annotations

import json
import math

import pytest

from wattwise.errors import ConfigurationError
from wattwise.model.advise import advise, footprints, rebatch_working_sets
from wattwise.model.coefficients import preset
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
    shrink, grow = a.width_options
    assert (shrink.direction, shrink.level) == ("shrink", "L2")
    assert (grow.direction, grow.level) == ("grow", "L3")
    assert shrink.width_scale < 1 < grow.width_scale
    assert shrink.ntp < ws.ntp < grow.ntp
    for o in a.width_options:
        assert o.kind == "width" and o.batch_size == 256
        assert o.in_band and 1 <= o.ratio <= 2
        assert o.widths is not None and o.widths[-1] == 10
        assert o.joules_per_sample > 0
        # the option really lands there when re-advised
        again = advise(mlp_working_sets(list(o.widths), 784, 256), BUTTER_E_CPU)
        assert not again.far
    assert a.joules_per_epoch == pytest.approx(235 * a.joules_per_sample * 256)


def test_near_network_has_no_width_options():
    # choose a width whose b lands at ~1.3x of the GPU L1 (112 KiB per SM)
    ws = mlp_working_sets([96, 96, 10], 64, 256)
    a = advise(ws, BUTTER_E_GPU)
    r = {lr.level: lr for lr in a.levels}
    assert r["L1"].near and 1 <= r["L1"].ratio <= 2
    assert not a.far and a.near and a.width_options == ()
    assert a.options == a.batch_options and len(a.options) == 7  # 16..1024, 256 among them
    assert "near a cache boundary (L1)" in a.text()


def test_tiny_network_only_grows():
    a = advise(mlp_working_sets([4, 1], 4, 8), BUTTER_E_GPU)
    assert a.far and [o.direction for o in a.width_options] == ["grow"]
    assert a.width_options[0].level == "L1"


def test_text_and_json_forms():
    a = advise(mlp_working_sets([512, 512, 10], 784, 256), BUTTER_E_GPU)
    t = a.text()
    for s in ("MiB", "KiB", "mJ per sample (estimate)", "FAR", "vs L1", "option: batch size 256 (current)",
              "±2.5 %", "best option: batch size 1024 instead of 256"):
        assert s in t, s
    assert t.splitlines()[0].startswith("wattwise sizing advice") and "best option" in t.splitlines()[0]
    j = json.loads(json.dumps(a.to_json()))
    assert j["far"] is True and j["set"] == "b"
    assert WorkingSets.from_json(j["working_sets"]) == a.working_sets
    assert j["hierarchy"]["name"] == "butter-e-gpu"
    assert len(j["features"]["forward"]) == 12 and j["features"]["names"][0] == "k_e"
    assert j["options"][0]["estimated_joules_per_sample"] > 0
    assert j["error_band"] == pytest.approx(0.025)
    assert {o["kind"] for o in j["options"] + j["hidden_options"]} == {"batch_size", "width"}
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


def test_rebatch_is_exact_for_an_mlp():
    ws = mlp_working_sets([64, 32, 10], 20, 64, n_obs=1000)
    for b in (1, 16, 256):
        again = rebatch_working_sets(ws, b)
        want = mlp_working_sets([64, 32, 10], 20, b, n_obs=1000)
        assert again.batch_size == b
        assert [t.distributed_bytes for t in again.inter_layer] == pytest.approx(
            [t.distributed_bytes for t in want.inter_layer])
        assert again.backward.distributed_bytes == pytest.approx(want.backward.distributed_bytes)
        assert again.backward.replicated_bytes == want.backward.replicated_bytes
        assert (again.ops_forward, again.ops_backward) == pytest.approx(
            (want.ops_forward, want.ops_backward))
        assert again.dataset == want.dataset
    with pytest.raises(ConfigurationError, match="batch_size=0"):
        rebatch_working_sets(ws, 0)


def test_batch_size_options_first_with_bands_memory_and_landing_level():
    ws = mlp_working_sets([128, 128, 10], 64, 64, n_obs=6000)
    c = preset("refit-cpu")
    a = advise(ws, BUTTER_E_CPU, c, n_samples=6000, batch_range=(8, 512))
    sizes = sorted(o.batch_size for o in a.batch_options)
    assert sizes == [8, 16, 32, 64, 128, 256, 512]
    kinds = [o.kind for o in a.options]
    assert kinds == sorted(kinds)  # "batch_size" < "width": batch sizes ranked first
    jps = [o.joules_per_sample for o in a.batch_options]
    assert jps == sorted(jps)
    current = next(o for o in a.batch_options if o.direction == "current")
    assert current.batch_size == 64 and current.joules_per_sample == pytest.approx(a.joules_per_sample)
    assert current.change == pytest.approx(0.0)
    for o in a.options:
        lo, hi = o.joules_per_sample_band  # type: ignore[misc]
        assert lo == pytest.approx(o.joules_per_sample * (1 - c.cv_error))
        assert hi == pytest.approx(o.joules_per_sample * (1 + c.cv_error))
        assert o.joules_per_epoch == pytest.approx(
            math.ceil(6000 / o.batch_size) * o.joules_per_sample * o.batch_size)
        assert o.memory is not None and o.memory.total_bytes > 0
        assert o.level in {lv.name for lv in BUTTER_E_CPU.levels}
    # the activations, and so the memory, grow with the batch; the parameters do not
    by_b = {o.batch_size: o for o in a.batch_options}
    assert by_b[512].memory.activation_bytes == pytest.approx(8 * by_b[64].memory.activation_bytes)
    assert by_b[512].memory.parameter_bytes == by_b[64].memory.parameter_bytes == 2 * 4 * ws.ntp
    # a width option is shown only when it changes J/sample by more than the error band
    for o in a.width_options:
        assert (o in a.options) == (abs(o.change) > c.cv_error)
        assert (o in a.hidden_options) == (abs(o.change) <= c.cv_error)
    assert a.best is a.options[0]
    assert f"best option: batch size {a.best.batch_size}" in a.text().splitlines()[0]


def test_batch_size_moves_b_across_a_cache_boundary():
    ws = mlp_working_sets([256, 256, 10], 256, 16)
    a = advise(ws, BUTTER_E_GPU, batch_range=(16, 16384))
    opts = sorted(a.batch_options, key=lambda o: o.batch_size)
    assert (opts[0].level, opts[-1].level) == ("L2", "L2")
    assert opts[0].ratio < 1 < opts[-1].ratio  # a big batch spills b out of the L2
    assert "b fits in L2" in opts[0].describe() and "b spills L2" in opts[-1].describe()
    ratios = [o.ratio for o in opts]
    assert ratios == sorted(ratios)


def test_no_cv_error_means_no_band_said_so():
    ws = mlp_working_sets([512, 512, 10], 784, 256)
    bare = preset("paper-gpu").with_values(preset("paper-gpu").values)
    assert bare.cv_error is None
    a = advise(ws, BUTTER_E_GPU, bare)
    assert all(o.joules_per_sample_band is None for o in a.options)
    assert a.hidden_options == () and len(a.width_options) == 2
    assert "no error band" in a.text() and a.to_json()["error_band"] is None


def test_bad_batch_range():
    ws = mlp_working_sets([8, 2], 4, 16)
    with pytest.raises(ConfigurationError, match=r"batch_range=\(64, 8\)"):
        advise(ws, BUTTER_E_GPU, batch_range=(64, 8))


@pytest.mark.parametrize("widths", [[32, 32, 32, 10], [512, 512, 10], [7, 300, 3, 10]])
def test_width_search_equals_the_plain_bisection(widths: list[int]) -> None:
    """The search computes an MLP's working sets once per distinct rounded widths; it finds
    exactly what sixty plain bisection steps over every scale find."""
    from wattwise.model.advise import _search_scale, scale_working_sets

    ws = mlp_working_sets(widths, 32, 256, n_obs=51200)
    band, target = (1.0, 2.0), 1.25
    for i, lv in enumerate(BUTTER_E_CPU.levels):
        if not lv.is_cache:
            continue

        def ratio(w: WorkingSets, name: str = lv.name) -> float:
            return next(r.ratio for r in footprints(w, BUTTER_E_CPU, "b", band) if r.level == name)

        lo, hi = math.log(1e-4), math.log(1e4)
        for _ in range(60):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if ratio(scale_working_sets(ws, math.exp(mid))) < target else (lo, mid)
        plain = min(((math.exp(c), ratio(scale_working_sets(ws, math.exp(c)))) for c in (lo, hi)),
                    key=lambda sr: abs(sr[1] - target))  # min keeps the first of a tie, as the search
        found = _search_scale(ws, BUTTER_E_CPU, "b", i, target, band)
        if found is None:
            assert not (0.5 <= plain[1] <= 4.0)
        else:
            assert (found[0], found[2]) == plain
            assert found[1] == scale_working_sets(ws, found[0])
