"""Tests of wattwise.samples.count_samples: any batch structure, batch_size_fn, the fast path."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from wattwise import samples as samples_module
from wattwise.samples import count_samples


def general(batch: Any) -> int | None:
    """The general (search) path, bypassing the per-type fast path."""
    return samples_module._search(batch, 0)


class Shaped:
    """An array-like of a fresh type: only a ``shape``."""

    def __init__(self, shape: Any) -> None:
        self.shape = shape


def fresh_type() -> type[Shaped]:
    """A new Shaped subclass, so the fast-path cache starts without it."""
    return type("FreshShaped", (Shaped,), {})


@pytest.mark.parametrize(
    "batch, expected",
    [
        (np.zeros((8, 3)), 8),
        (np.zeros(5), 5),
        ((np.zeros((4, 2)), np.zeros(4)), 4),
        ([np.zeros((6, 2)), np.zeros(6)], 6),
        ({"image": np.zeros((3, 28, 28)), "label": np.zeros(7)}, 3),
        (([{"x": np.zeros((5, 2))}], np.zeros(9)), 5),
        (("name", b"bytes", np.zeros((2, 1))), 2),
        ({"meta": "abc", "x": [np.zeros((7, 1))]}, 7),
        ((np.array(1.0), np.zeros(4)), 4),
    ],
)
def test_counts_the_first_array_like(batch: Any, expected: int) -> None:
    """The first dimension of the first array found in order, containers searched, strings skipped."""
    assert count_samples(batch) == expected


@pytest.mark.parametrize(
    "batch",
    [np.array(3.0), object(), 5, None, "abcdef", b"xyz", [], (), {}, ["a", "b"],
     {"k": "v"}, Shaped((None, 3)), Shaped("ab"), Shaped(()), np.float64, Shaped],
)
def test_unknown_is_none(batch: Any) -> None:
    """0-d arrays, objects without a shape, strings, empty containers and types give None."""
    assert count_samples(batch) is None


@pytest.mark.parametrize(
    "fn, expected",
    [
        (lambda b: 16, 16),
        (lambda b: 0, 0),
        (lambda b: 16.0, None),
        (lambda b: "16", None),
        (lambda b: None, None),
        (lambda b: -1, None),
        (lambda b: True, None),
        (lambda b: 1 / 0, None),
    ],
)
def test_batch_size_fn(fn: Any, expected: int | None) -> None:
    """batch_size_fn wins when it returns an int >= 0; anything else (or raising) gives None."""
    result = count_samples(np.zeros((99, 2)), fn)
    assert result == expected
    assert result is None or type(result) is int


def test_batch_size_fn_gets_the_batch() -> None:
    """batch_size_fn is called with the batch itself."""
    seen: list[Any] = []
    batch = {"tokens": [1, 2, 3]}
    assert count_samples(batch, lambda b: seen.append(b) or len(b["tokens"])) == 3
    assert seen == [batch]


def test_fast_path_agrees_with_general_path() -> None:
    """Repeated calls with one type (the fast path) give what the general search gives."""
    cls = fresh_type()
    batches = [
        cls((8, 3)), cls((5, 3)), (cls((4,)), np.zeros(9)), [cls((2, 2)), "y"],
        cls((None, 3)), (cls(()), cls((6,))), cls((0, 1)),
    ]
    first = [count_samples(b) for b in batches]
    assert cls in samples_module._SHAPE_TYPES  # learned on the first int leading dimension
    second = [count_samples(b) for b in batches]
    assert first == second == [general(b) for b in batches] == [8, 5, 4, 2, None, 6, 0]


def test_fast_path_reads_each_batch_not_a_cached_value() -> None:
    """numpy arrays of different lengths in a row give each its own length."""
    assert [count_samples((np.zeros(n), np.zeros(1))) for n in (3, 7, 1)] == [3, 7, 1]
    assert [count_samples(np.zeros((n, 2))) for n in (10, 2)] == [10, 2]


def test_non_int_leading_dimension_is_converted_or_unknown() -> None:
    """A leading dimension that converts to int is used; one that does not gives None."""
    assert count_samples(Shaped((np.int64(12), 3))) == 12
    assert count_samples(Shaped(("x", 3))) is None


class RaisingShape:
    """An exotic object whose ``shape`` raises."""

    @property
    def shape(self) -> Any:
        raise RuntimeError("shape is not available")


class RaisingLen:
    def __len__(self) -> int:
        raise RuntimeError("no length")

    def __getitem__(self, i: int) -> int:
        raise RuntimeError("no item")


@pytest.mark.parametrize(
    "batch",
    [RaisingShape(), (RaisingShape(), np.zeros(2)), {"a": RaisingShape()}, Shaped(RaisingLen()),
     Shaped(object()), [Shaped(RaisingLen())]],
)
def test_never_raises_on_exotic_objects(batch: Any) -> None:
    """Objects whose shape raises or cannot be measured give None, never an exception."""
    assert count_samples(batch) is None


def test_never_raises_on_the_fast_path() -> None:
    """A learned array-like type whose shape later raises or is odd still gives None."""
    cls = fresh_type()
    assert count_samples(cls((4, 2))) == 4  # learned: the next call takes the fast path
    results = [count_samples(bad) for bad in (cls(object()), (cls(object()), np.zeros(3)))]
    assert results == [None, 3]  # what the general path gives for them
