"""The Trainer adapter's arithmetic, without transformers: samples per step and the keys."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from wattwise.errors import ConfigurationError
from wattwise.hf_data import BatchPlan, domain_name, trainer_metric_keys
from wattwise.records import PhaseRecord


def rec(**kw: object) -> PhaseRecord:
    base: dict[str, object] = dict(joules=30.0, joules_by_domain={"gpu:0": 20.0, "cpu:package-0": 10.0},
                                   seconds=3.0, samples=60, batches=8, estimated=False)
    base.update(kw)
    return PhaseRecord.from_sums("train", 0, **base)  # type: ignore[arg-type]


def test_last_batch_exact_when_the_dataset_length_is_known() -> None:
    plan = BatchPlan.of(8, n_batches=8, dataset_len=60, world_size=1, drop_last=False)
    assert [plan.samples(i) for i in range(8)] == [8] * 7 + [4]
    # gradient accumulation 3: steps of 3, 3 and the remaining 2 micro-batches
    assert [plan.take(s, 3) for s in (0, 3, 6)] == [(24, 3), (24, 3), (12, 2)]
    assert plan.take(8, 3) == (0, 0)  # past the end: nothing


@pytest.mark.parametrize(("why", "kw"), [
    ("several processes: accelerate pads shards to full batches", dict(world_size=2, drop_last=False)),
    ("drop_last: every batch is full", dict(world_size=1, drop_last=True)),
])
def test_every_batch_full_otherwise(why: str, kw: dict[str, object]) -> None:
    plan = BatchPlan.of(8, n_batches=7, dataset_len=60, **kw)  # type: ignore[arg-type]
    assert plan.n_samples is None, why
    assert sum(plan.samples(i) for i in range(7)) == 56


def test_unknown_length_counts_full_batches_without_end() -> None:
    plan = BatchPlan.of(4, n_batches=None, dataset_len=None, world_size=1, drop_last=False)
    assert plan.take(1000, 2) == (8, 2)


def test_a_loader_not_covering_the_dataset_is_not_trusted() -> None:
    # 3 batches of 8 cannot hold 60 samples (a sampler that subsamples): no exact last batch
    assert BatchPlan.of(8, n_batches=3, dataset_len=60, world_size=1, drop_last=False).n_samples is None


@pytest.mark.parametrize("kw", [dict(batch_size=0), dict(batch_size=True), dict(batch_size=2, n_samples=-1),
                                dict(batch_size=2, n_batches=1.5)])
def test_bad_plan_names_the_field(kw: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=next(iter(k for k in kw if k != "batch_size"), "batch_size")):
        BatchPlan(**kw)  # type: ignore[arg-type]


def test_keys_training_and_evaluation() -> None:
    train = trainer_metric_keys(rec())
    assert train == {"energy_joules": 30.0, "energy_joules_per_sample": 0.5, "energy_watts": 10.0,
                     "energy_joules_gpu_0": 20.0, "energy_joules_cpu_package-0": 10.0,
                     "energy_estimated": 0.0}
    ev = trainer_metric_keys(rec(), "eval_data1")
    assert set(ev) == {"eval_data1_" + k for k in train}


def test_estimate_is_flagged_and_keys_stay_the_same() -> None:
    est = trainer_metric_keys(rec(estimated=True))
    assert est["energy_estimated"] == 1.0
    assert set(est) == set(trainer_metric_keys(rec()))


def test_unknown_values_are_left_out_never_zero() -> None:
    keys = trainer_metric_keys(rec(joules=None, joules_by_domain={"gpu:0": None}, samples=None))
    assert keys == {"energy_estimated": 0.0}
    keys = trainer_metric_keys(rec(joules=math.nan))
    assert "energy_joules" not in keys and "energy_joules_gpu_0" in keys


def test_optional_quantities_when_known() -> None:
    keys = trainer_metric_keys(rec(active_joules=12.0, co2_g=0.5), "eval")
    assert keys["eval_energy_active_joules"] == 12.0 and keys["eval_energy_co2_g"] == 0.5


def test_domain_names_keep_only_safe_characters() -> None:
    assert domain_name("cpu:package-0") == "cpu_package-0"
    assert domain_name("gpu:0/mem.x y") == "gpu_0/mem.x_y"


def test_hf_data_imports_no_framework() -> None:
    code = ("import sys, json, wattwise.hf_data\n"
            "print(json.dumps(sorted(m for m in ('torch', 'transformers', 'accelerate', 'keras') "
            "if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
