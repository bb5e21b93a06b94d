"""Samples from the data loader's plan (no batch looked at) equal samples counted per batch."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wattwise import EnergyTracker
from wattwise.samples import LoaderPlan, count_samples, torch_loader_plan
from wattwise.testing import FakeMeter

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402


def _loader(n: int, bs: int, **kw: Any) -> Any:
    return DataLoader(TensorDataset(torch.zeros(n, 2), torch.zeros(n)), batch_size=bs, **kw)


@given(n=st.integers(1, 200), bs=st.integers(1, 40), drop_last=st.booleans(),
       start=st.integers(0, 60), k=st.integers(0, 60))
def test_plan_equals_counting_every_batch(n: int, bs: int, drop_last: bool, start: int,
                                          k: int) -> None:
    loader = _loader(n, bs, drop_last=drop_last)
    plan = torch_loader_plan(loader)
    assert plan is not None and plan.n_batches == len(loader)
    sizes = [count_samples(b) for b in loader]
    assert plan.samples(start, start + k) == sum(sizes[start:start + k])


def test_loaders_whose_batches_are_not_predictable_have_no_plan() -> None:
    assert torch_loader_plan(_loader(10, 3, collate_fn=lambda items: items)) is None
    sampler = torch.utils.data.BatchSampler(range(10), batch_size=3, drop_last=False)
    custom = DataLoader(TensorDataset(torch.zeros(10, 2)), batch_sampler=sampler)
    assert torch_loader_plan(custom) is not None  # the stock BatchSampler, given explicitly

    class Buckets(torch.utils.data.BatchSampler):  # type: ignore[misc]
        pass

    odd = DataLoader(TensorDataset(torch.zeros(10, 2)),
                     batch_sampler=Buckets(range(10), batch_size=3, drop_last=False))
    assert torch_loader_plan(odd) is None

    class Stream(torch.utils.data.IterableDataset):  # type: ignore[misc]
        def __iter__(self) -> Any:
            return iter(range(5))

    assert torch_loader_plan(DataLoader(Stream(), batch_size=2)) is None
    assert torch_loader_plan(None) is None and torch_loader_plan([1, 2]) is None


def test_distributed_sampler_plan_is_this_ranks_share() -> None:
    ds = TensorDataset(torch.zeros(11, 2))
    sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=False)
    loader = DataLoader(ds, batch_size=4, sampler=sampler)
    plan = torch_loader_plan(loader)
    assert plan is not None and plan.samples(0, 99) == sum(count_samples(b) for b in loader) == 6


def test_tracker_windows_continue_the_pass_where_the_last_window_stopped() -> None:
    # 10 samples in batches of 4: 4, 4, 2; a validation window splits the train pass
    plan = LoaderPlan(4, 10, drop_last=False)
    tracker = EnergyTracker([FakeMeter(joules_per_read=1.0)], summary_path=None)
    tracker.begin_stage("fit")
    tracker.start_window("train", 0, plan)
    for _ in range(2):
        tracker.count_batch(object())  # never looked at
    tracker.start_window("validate", 0)
    tracker.add_batch(3)
    assert tracker.end_window().samples == 3  # type: ignore[union-attr]
    tracker.end_window()
    tracker.start_window("train", 0, plan)
    tracker.count_batch(object())
    rec = tracker.end_epoch()
    assert rec is not None and rec.phases["train"].samples == 10
    assert rec.phases["train"].batches == 3
    tracker.finish()


def test_step_level_records_take_their_samples_from_the_plan() -> None:
    plan = LoaderPlan(4, 10, drop_last=False)
    tracker = EnergyTracker([FakeMeter(joules_per_read=1.0)], summary_path=None,
                            log_every_n_steps=1, min_window_s=0.0)
    tracker.begin_stage("fit")
    tracker.start_window("train", 0, plan)
    steps = [tracker.count_batch(object()) for _ in range(3)]
    assert [s.samples for s in steps if s is not None] == [4, 4, 2]
    tracker.finish()


def test_epoch_samples_counts_what_an_epoch_trains_on() -> None:
    from wattwise.samples import epoch_samples

    loader = _loader(10, 4)
    assert epoch_samples(loader, 3) == 10  # every batch: the whole dataset
    assert epoch_samples([loader], 2) == 8  # limit_train_batches: 2 of 4
    assert epoch_samples(loader, 1, world_size=2) == 8  # 1 batch of 4 on each of 2 ranks
    assert epoch_samples(loader, float("inf")) == 10

    class Stream(torch.utils.data.IterableDataset):  # type: ignore[misc]
        def __iter__(self) -> Any:
            return iter(range(5))

    assert epoch_samples(DataLoader(Stream(), batch_size=2), 3) is None
    assert epoch_samples(None) is None


def test_ended_status() -> None:
    from wattwise._lifecycle import ended_status

    assert ended_status(None) == "completed"
    assert ended_status(KeyboardInterrupt()) == "interrupted"
    assert ended_status(ValueError("x")) == "failed"
