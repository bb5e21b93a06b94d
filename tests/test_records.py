"""Tests of wattwise.records: metric keys of both styles, the reduction over ranks, ratios."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattwise.records import (
    ESTIMATED_KEY,
    PhaseRecord,
    StepRecord,
    domain_key,
    grouped,
    metric_keys,
    progress_bar_metrics,
    reduce_records,
)


def phase(
    phase: str = "train",
    *,
    joules: float | None = 10.0,
    by_domain: dict[str, float | None] | None = None,
    seconds: float = 2.0,
    samples: int | None = 5,
    batches: int = 2,
    estimated: bool = False,
    active: float | None = None,
    co2: float | None = None,
    epoch: int = 0,
) -> PhaseRecord:
    return PhaseRecord.from_sums(
        phase, epoch, joules=joules,
        joules_by_domain={"gpu:0": joules} if by_domain is None else by_domain,
        seconds=seconds, samples=samples, batches=batches, estimated=estimated,
        active_joules=active, co2_g=co2,
    )


def step(**overrides: Any) -> StepRecord:
    fields: dict[str, Any] = dict(
        phase="train", epoch=0, step=9, joules=4.0, seconds=2.0, samples=8, batches=2,
        estimated=False, joules_per_sample=0.5, watts=2.0,
    )
    fields.update(overrides)
    return StepRecord(**fields)


# metric_keys -------------------------------------------------------------------------------
def test_lightning_train_keys_and_values() -> None:
    """Lightning keys are energy/train_<q> and energy/train_joules/<domain>, the domain made of
    characters every logger accepts, plus the estimated flag."""
    rec = phase(joules=10.0, by_domain={"gpu:0": 6.0, "cpu:package-0": 4.0}, seconds=2.0,
                samples=5, active=8.0, co2=1.5)
    assert metric_keys(rec, "lightning") == {
        "energy/train_joules": 10.0,
        "energy/train_joules_per_sample": 2.0,
        "energy/train_watts": 5.0,
        "energy/train_active_joules": 8.0,
        "energy/train_co2_g": 1.5,
        "energy/train_joules/gpu_0": 6.0,
        "energy/train_joules/cpu_package-0": 4.0,
        "energy/estimated": 0.0,
    }


@pytest.mark.parametrize("ph, prefix", [("validate", "val"), ("test", "test"),
                                        ("predict", "predict")])
def test_lightning_phase_names(ph: str, prefix: str) -> None:
    """validate/test/predict records are logged as energy/val_, energy/test_, energy/predict_."""
    keys = metric_keys(phase(ph, joules=3.0, seconds=1.0, samples=3), "lightning")
    assert keys == {
        f"energy/{prefix}_joules": 3.0,
        f"energy/{prefix}_joules_per_sample": 1.0,
        f"energy/{prefix}_watts": 3.0,
        f"energy/{prefix}_joules/gpu_0": 3.0,
        "energy/estimated": 0.0,
    }


def test_keras_train_keys_and_values() -> None:
    """Keras keys are energy_<q> and energy_joules_<domain> with non-alphanumerics as _."""
    rec = phase(joules=10.0, by_domain={"gpu:0": 6.0, "cpu:package-0": 4.0}, seconds=4.0,
                samples=20, active=7.0, co2=0.25)
    assert metric_keys(rec, "keras") == {
        "energy_joules": 10.0,
        "energy_joules_per_sample": 0.5,
        "energy_watts": 2.5,
        "energy_active_joules": 7.0,
        "energy_co2_g": 0.25,
        "energy_joules_gpu_0": 6.0,
        "energy_joules_cpu_package_0": 4.0,
        "energy_estimated": 0.0,
    }


@pytest.mark.parametrize("ph, prefix", [("validate", "val_"), ("test", "test_"),
                                        ("predict", "predict_")])
def test_keras_phase_prefixes(ph: str, prefix: str) -> None:
    """Keras validate/test/predict keys carry the val_/test_/predict_ prefix; the flag does not
    (one flag key, whatever the phase)."""
    keys = metric_keys(phase(ph, joules=6.0, by_domain={"cpu:package-0": 6.0}, seconds=3.0,
                             samples=2), "keras")
    assert keys == {
        f"{prefix}energy_joules": 6.0,
        f"{prefix}energy_joules_per_sample": 3.0,
        f"{prefix}energy_watts": 2.0,
        f"{prefix}energy_joules_cpu_package_0": 6.0,
        "energy_estimated": 0.0,
    }


@pytest.mark.parametrize("style", ["lightning", "keras"])
@pytest.mark.parametrize("ph", ["train", "validate", "test"])
def test_keys_do_not_depend_on_the_hardware(style: Any, ph: str) -> None:
    """A measured and an estimated record have the same keys; only the flag's value differs."""
    measured = metric_keys(phase(ph, joules=4.0, seconds=2.0, samples=4), style)
    estimated = metric_keys(phase(ph, joules=4.0, seconds=2.0, samples=4, estimated=True), style)
    flag = ESTIMATED_KEY[style]
    assert measured.keys() == estimated.keys()
    assert (measured.pop(flag), estimated.pop(flag)) == (0.0, 1.0)
    assert measured == estimated
    assert not any("estimated" in k for k in measured)


def test_step_record_keys() -> None:
    """Step records log joules, J/sample and W as energy/train_step_<q> and energy_step_<q>."""
    rec = step(joules=4.0, joules_per_sample=0.5, watts=2.0)
    assert metric_keys(rec, "lightning") == {
        "energy/train_step_joules": 4.0,
        "energy/train_step_joules_per_sample": 0.5,
        "energy/train_step_watts": 2.0,
        "energy/estimated": 0.0,
    }
    assert metric_keys(rec, "keras") == {
        "energy_step_joules": 4.0,
        "energy_step_joules_per_sample": 0.5,
        "energy_step_watts": 2.0,
        "energy_estimated": 0.0,
    }
    assert metric_keys(step(estimated=True), "keras") == {
        "energy_step_joules": 4.0, "energy_step_joules_per_sample": 0.5,
        "energy_step_watts": 2.0, "energy_estimated": 1.0}


@pytest.mark.parametrize("style", ["lightning", "keras"])
def test_unknown_values_are_left_out_never_zero(style: Any) -> None:
    """None and NaN values (and None domains) give no key at all, not a 0 - and no flag."""
    rec = phase(joules=None, by_domain={"gpu:0": None, "cpu:package-0": float("nan")},
                seconds=2.0, samples=None, co2=float("nan"))
    assert rec.joules_per_sample is None and rec.watts is None
    assert metric_keys(rec, style) == {}
    partial = phase(joules=3.0, by_domain={"gpu:0": 3.0, "cpu:package-0": None}, samples=None)
    keys = metric_keys(partial, style)
    keys.pop(ESTIMATED_KEY[style])
    assert sorted(keys.values()) == [1.5, 3.0, 3.0]  # watts, joules, joules/gpu_0
    assert not any("per_sample" in k or "package" in k for k in keys)
    assert metric_keys(step(joules=None, joules_per_sample=None, watts=float("nan")),
                       style) == {}


def test_a_known_zero_is_logged() -> None:
    """A measured 0 J (a known zero) is logged, unlike an unknown value."""
    keys = metric_keys(phase(joules=0.0, seconds=2.0, samples=4), "lightning")
    assert keys["energy/train_joules"] == 0.0
    assert keys["energy/train_joules_per_sample"] == 0.0


@pytest.mark.parametrize("style", ["lightning", "keras"])
@given(domain=st.text(min_size=1, max_size=20))
def test_every_key_is_made_of_characters_every_logger_accepts(style: Any, domain: str) -> None:
    """Letters, digits, _ / - . only (MLflow's rule, minus the space), whatever the domain name;
    a domain never adds a group level."""
    keys = metric_keys(phase(joules=1.0, by_domain={domain: 1.0}), style)
    domain_keys = set(keys) - set(metric_keys(phase(joules=1.0, by_domain={}), style))
    assert len(domain_keys) == 1
    assert all(re.fullmatch(r"[A-Za-z0-9_/.\-]+", k) for k in keys), keys
    if style == "lightning":
        assert domain_keys.pop().count("/") == 2


def test_domain_key_examples() -> None:
    assert domain_key("cpu:package-0") == "cpu_package-0"
    assert domain_key("gpu:0") == "gpu_0"
    assert domain_key("cpu:dram-0", "keras") == "cpu_dram_0"
    assert domain_key("a/b.c") == "a_b.c"  # a / would be a group separator


def test_grouped_applies_a_logger_group_separator() -> None:
    metrics = {"energy/train_joules/cpu_package-0": 2.0, "energy/estimated": 1.0}
    assert grouped(metrics, "/") == metrics
    assert grouped(metrics, ".") == {"energy.train_joules.cpu_package-0": 2.0,
                                     "energy.estimated": 1.0}


def test_progress_bar_metrics_are_the_joules_per_sample() -> None:
    rec = phase(joules=10.0, seconds=2.0, samples=5)
    assert progress_bar_metrics(metric_keys(rec, "lightning")) == {
        "energy/train_joules_per_sample": 2.0}
    val = phase("validate", joules=3.0, seconds=1.0, samples=3)
    assert progress_bar_metrics(metric_keys(val, "keras")) == {"val_energy_joules_per_sample": 1.0}


# reduce_records ----------------------------------------------------------------------------
def test_reduce_adds_joules_samples_batches_and_takes_longest_seconds() -> None:
    """Joules, domains, samples and batches add up over ranks; seconds are the maximum."""
    r0 = phase(joules=10.0, by_domain={"gpu:0": 10.0}, seconds=2.0, samples=4, batches=2,
               active=6.0, co2=1.0)
    r1 = phase(joules=30.0, by_domain={"gpu:1": 30.0}, seconds=3.0, samples=6, batches=3,
               active=20.0, co2=2.0)
    out = reduce_records([(r0, True), (r1, True)])
    assert out.joules == 40.0
    assert dict(out.joules_by_domain) == {"gpu:0": 10.0, "gpu:1": 30.0}
    assert (out.samples, out.batches, out.seconds) == (10, 5, 3.0)
    assert (out.active_joules, out.co2_g) == (26.0, 3.0)
    assert out.joules_per_sample == 4.0 and out.joules_per_batch == 8.0
    assert out.watts == pytest.approx(40.0 / 3.0)
    assert not out.estimated


def test_reduce_adds_same_named_domains_of_two_nodes() -> None:
    """Two nodes each reporting cpu:package-0 add up under that one domain name."""
    r0 = phase(joules=5.0, by_domain={"cpu:package-0": 5.0})
    r1 = phase(joules=7.0, by_domain={"cpu:package-0": 7.0})
    out = reduce_records([(r0, True), (r1, True)])
    assert dict(out.joules_by_domain) == {"cpu:package-0": 12.0}
    assert out.joules == 12.0


def test_reduce_rank_without_meters_adds_no_joules() -> None:
    """A rank without meters contributes samples, batches and seconds but no joules."""
    r0 = phase(joules=9.0, by_domain={"cpu:package-0": 9.0}, seconds=2.0, samples=4,
               batches=1)
    r1 = phase(joules=None, by_domain={}, seconds=5.0, samples=6, batches=1)
    out = reduce_records([(r0, True), (r1, False)])
    assert out.joules == 9.0
    assert dict(out.joules_by_domain) == {"cpu:package-0": 9.0}
    assert (out.samples, out.batches, out.seconds) == (10, 2, 5.0)
    assert out.joules_per_sample == 0.9


def test_reduce_unknown_joules_on_a_measured_rank_makes_the_sum_unknown() -> None:
    """A rank with meters but joules None (or no record) makes the summed joules None."""
    r0 = phase(joules=9.0, by_domain={"gpu:0": 9.0})
    r1 = phase(joules=None, by_domain={"gpu:1": None})
    out = reduce_records([(r0, True), (r1, True)])
    assert out.joules is None and out.joules_per_sample is None and out.watts is None
    assert dict(out.joules_by_domain) == {"gpu:0": 9.0, "gpu:1": None}
    missing = reduce_records([(r0, True), (None, True)])
    assert missing.joules is None
    assert missing.batches == r0.batches and missing.seconds == r0.seconds


def test_reduce_unknown_samples_on_any_rank_makes_samples_unknown() -> None:
    """samples None on one rank (even one without meters) gives samples None."""
    r0 = phase(samples=4)
    r1 = phase(joules=None, by_domain={}, samples=None)
    out = reduce_records([(r0, True), (r1, False)])
    assert out.samples is None and out.joules_per_sample is None
    assert out.joules == 10.0


def test_reduce_single_rank_returns_the_same_record() -> None:
    """With one rank the record is returned as it is."""
    rec = phase()
    assert reduce_records([(rec, True)]) is rec


def test_reduce_keeps_the_estimate_flag() -> None:
    """One estimated rank makes the reduced record an estimate."""
    out = reduce_records([(phase(), True), (phase(estimated=True), True)])
    assert out.estimated and out.joules == 20.0


# PhaseRecord.from_sums ---------------------------------------------------------------------
def test_ratios_never_divide_by_zero() -> None:
    """Zero samples, batches or seconds give None ratios, not an error nor infinity."""
    rec = phase(joules=5.0, seconds=0.0, samples=0, batches=0)
    assert (rec.joules_per_sample, rec.joules_per_batch, rec.watts) == (None, None, None)
    unknown = phase(joules=None, seconds=2.0, samples=4, batches=2)
    assert (unknown.joules_per_sample, unknown.joules_per_batch, unknown.watts) == (
        None, None, None)
    ok = phase(joules=6.0, seconds=3.0, samples=12, batches=4)
    assert (ok.joules_per_sample, ok.joules_per_batch, ok.watts) == (0.5, 1.5, 2.0)
    assert all(math.isfinite(v) for v in ok.metrics().values())
