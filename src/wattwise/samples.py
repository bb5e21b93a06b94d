"""``count_samples``: how many samples a batch holds, for any framework, or None when unknown."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["LoaderPlan", "count_samples", "epoch_samples", "torch_loader_plan"]

# array types (torch.Tensor, numpy.ndarray, ...) whose shape[0] was read as an int: the
# per-batch fast path is then a type lookup and one shape read (hot: every training batch)
_SHAPE_TYPES: set[type] = set()


def _leading_dim(x: Any) -> int | None:
    shape = getattr(x, "shape", None)
    if shape is None or isinstance(x, type):
        return None
    try:
        if len(shape) == 0 or shape[0] is None:
            return None
        n = int(shape[0])
    except (TypeError, ValueError):
        return None
    if type(shape[0]) is int:
        _SHAPE_TYPES.add(type(x))
    return n


def _search(batch: Any, depth: int) -> int | None:
    n = _leading_dim(batch)
    if n is not None or depth > 8:
        return n
    if isinstance(batch, (str, bytes)):
        return None
    if isinstance(batch, Mapping):
        items: Any = batch.values()
    elif isinstance(batch, (list, tuple)):
        items = batch
    else:
        return None
    for item in items:
        n = _search(item, depth + 1)
        if n is not None:
            return n
    return None


def count_samples(batch: Any, batch_size_fn: Callable[[Any], Any] | None = None) -> int | None:
    """Samples in ``batch``: ``batch_size_fn(batch)`` when given, else the first dimension of
    the first array-like (anything with a ``shape``: torch, NumPy, TensorFlow, JAX) found in
    the batch, nested tuples, lists and mappings searched in order, as Lightning's
    ``extract_batch_size`` does. None when it cannot tell (never a guess, never raises).
    """
    if batch_size_fn is not None:
        try:
            n = batch_size_fn(batch)
        except Exception:  # noqa: BLE001 - the caller reports unknown samples once
            return None
        return int(n) if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else None
    kind = type(batch)
    first = batch[0] if (kind is tuple or kind is list) and batch else batch
    if type(first) in _SHAPE_TYPES:  # the common case: (x, y) with x a tensor, or a tensor
        try:
            shape = first.shape
            if shape and type(shape[0]) is int:
                return shape[0]  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001, S110 - an odd instance: the general path decides
            pass
    try:
        return _search(batch, 0)
    except Exception:  # noqa: BLE001 - exotic containers: unknown, never an error in training
        return None


class LoaderPlan:
    """The batch sizes of one pass over a map-style data loader with a plain batch sampler:
    every batch holds ``batch_size`` samples except the last, which holds what is left of
    ``n_samples`` (``drop_last``: none is partial). Exact, so the callbacks need not look at
    each batch to count its samples."""

    __slots__ = ("batch_size", "n_batches", "n_samples")

    def __init__(self, batch_size: int, n_samples: int, drop_last: bool) -> None:
        self.batch_size = batch_size
        self.n_batches = n_samples // batch_size if drop_last else -(-n_samples // batch_size)
        self.n_samples = self.n_batches * batch_size if drop_last else n_samples

    def samples(self, start: int, stop: int) -> int:
        """Samples in batches ``start`` to ``stop - 1`` (0-based) of the pass."""
        stop = min(stop, self.n_batches)
        if stop <= start:
            return 0
        if stop == self.n_batches:
            return self.n_samples - start * self.batch_size
        return (stop - start) * self.batch_size


def torch_loader_plan(loader: Any) -> LoaderPlan | None:
    """A :class:`LoaderPlan` for a ``torch.utils.data.DataLoader`` whose batches are exactly
    predictable: the stock ``BatchSampler`` (``batch_size=`` or given) over a sampler with a length
    (a ``DistributedSampler``'s is this rank's share), the stock ``default_collate``. None for
    anything else (an iterable dataset, a custom batch sampler or collate function): the
    callbacks then count every batch."""
    try:
        from torch.utils.data import BatchSampler, default_collate

        sampler: Any = getattr(loader, "batch_sampler", None)
        if type(sampler) is not BatchSampler or getattr(loader, "collate_fn", None) \
                is not default_collate:
            return None
        bs = sampler.batch_size
        if not isinstance(bs, int) or isinstance(bs, bool) or bs < 1:
            return None
        n = len(sampler.sampler)
        return LoaderPlan(bs, n, bool(sampler.drop_last)) if n > 0 else None
    except Exception:  # noqa: BLE001 - anything unusual: count every batch
        return None


def epoch_samples(loaders: Any, num_batches: Any = None, world_size: int = 1) -> int | None:
    """Samples one training epoch works through, over all ranks: the loaders' dataset lengths,
    capped by ``num_batches`` (per rank, e.g. Lightning's ``num_training_batches`` with
    ``limit_train_batches``) x their batch sizes x ``world_size``. None when a dataset has no
    length (an iterable dataset); uncapped when the batch size is not known."""
    loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
    try:
        samples = sum(len(dl.dataset) for dl in loaders)
    except Exception:  # noqa: BLE001 - no dataset, or no length: unknown
        return None
    try:
        per_step = sum(int(dl.batch_size) for dl in loaders) * max(1, int(world_size))
    except (TypeError, ValueError):  # batch_size None (a batch sampler): not capped
        return samples
    if isinstance(num_batches, int) or (isinstance(num_batches, float)
                                        and num_batches != float("inf")):
        samples = min(samples, int(num_batches) * per_step)
    return samples
