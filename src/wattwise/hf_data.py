"""What the Hugging Face ``Trainer`` adapter needs that is plain arithmetic: samples per step
and the logged keys. Imports no framework (``wattwise.transformers`` imports transformers).

The ``Trainer`` never hands a batch to a callback: it calls ``on_step_end`` once per optimizer
step (``gradient_accumulation_steps`` micro-batches) and ``on_prediction_step`` once per
evaluation batch. :class:`BatchPlan` turns those calls into samples from what the data loader
says about itself: every batch holds ``batch_size`` samples, except the last batch of a pass,
whose size follows from the dataset's length when it is known (one process, a dataset with a
``len``, ``drop_last`` off). Without a length (an ``IterableDataset``), or with several
processes (``accelerate`` pads the shards to full batches by default), every batch counts as
full.

Example:
    >>> from wattwise.hf_data import BatchPlan
    >>> plan = BatchPlan(batch_size=8, n_samples=20, n_batches=3)
    >>> [plan.samples(i) for i in range(3)], plan.take(0, 2), plan.take(2, 2)
    ([8, 8, 4], (16, 2), (4, 1))
"""

from __future__ import annotations

import math

from wattwise._record import record
from wattwise.errors import ConfigurationError
from wattwise.records import METRIC_QUANTITIES, PhaseRecord

__all__ = ["BatchPlan", "domain_name", "trainer_metric_keys"]


@record
class BatchPlan:
    """The batches of one pass over a data loader (an epoch, or one evaluation).

    Attributes:
        batch_size: samples per batch of this process (``per_device_*_batch_size``, times
            the GPUs under ``DataParallel``).
        n_samples: samples in the pass when the last batch's size is known from the dataset
            (one process, ``len(dataset)``, no ``drop_last``); None = every batch counts as full.
        n_batches: batches in the pass (``len(dataloader)``); None = unknown (no end known).
    """

    batch_size: int
    n_samples: int | None = None
    n_batches: int | None = None

    def __post_init__(self) -> None:
        for name in ("batch_size", "n_samples", "n_batches"):
            v = getattr(self, name)
            if v is None and name != "batch_size":
                continue
            if isinstance(v, bool) or not isinstance(v, int) or v < (1 if name == "batch_size" else 0):
                raise ConfigurationError(f"BatchPlan({name}={v!r}): expected an int >= "
                                         f"{1 if name == 'batch_size' else 0}")

    @classmethod
    def of(cls, batch_size: int, *, n_batches: int | None, dataset_len: int | None,
           world_size: int, drop_last: bool) -> BatchPlan:
        """The plan of a loader: the last batch's size is taken from ``dataset_len`` only on
        one process without ``drop_last`` and when the batches cover the dataset."""
        exact = (dataset_len is not None and n_batches is not None and world_size == 1
                 and not drop_last and n_batches == math.ceil(dataset_len / batch_size))
        return cls(batch_size, dataset_len if exact else None, n_batches)

    def samples(self, index: int) -> int:
        """Samples in batch ``index`` (0-based) of the pass; 0 past the known end."""
        if self.n_batches is not None and index >= self.n_batches:
            return 0
        if self.n_samples is not None and self.n_batches is not None and index == self.n_batches - 1:
            return self.n_samples - index * self.batch_size
        return self.batch_size

    def take(self, start: int, batches: int) -> tuple[int, int]:
        """``(samples, batches)`` of ``batches`` batches from batch ``start``: an optimizer step
        of ``gradient_accumulation_steps`` micro-batches, fewer at the end of a known pass."""
        if self.n_batches is not None:
            batches = max(0, min(batches, self.n_batches - start))
        return sum(self.samples(start + i) for i in range(batches)), batches


def domain_name(domain: str) -> str:
    """A domain as part of a key every logger accepts: letters, digits, ``_``, ``/``, ``-`` and
    ``.`` kept, anything else (``:``) as ``_`` (``"cpu:package-0"`` -> ``"cpu_package-0"``)."""
    return "".join(c if c.isalnum() or c in "_/-." else "_" for c in domain)


def trainer_metric_keys(rec: PhaseRecord, prefix: str = "") -> dict[str, float]:
    """The keys the ``Trainer`` adapter logs for one record, in transformers' style.

    ``<prefix>_energy_<quantity>`` for each known quantity of
    :data:`~wattwise.records.METRIC_QUANTITIES` (``energy_joules``,
    ``energy_joules_per_sample``, ``energy_watts``, ``energy_active_joules``,
    ``energy_co2_g``), ``<prefix>_energy_joules_<domain>`` per known domain
    (:func:`domain_name`) and always ``<prefix>_energy_estimated`` (1.0 for an estimate, 0.0
    for a measurement). No prefix for training; ``"eval"`` for evaluation (transformers'
    ``metric_key_prefix``). Unknown (None, NaN) values are left out, never 0.

    Example:
        >>> from wattwise.records import PhaseRecord
        >>> rec = PhaseRecord.from_sums("validate", 0, joules=8.0, joules_by_domain={"gpu:0": 8.0},
        ...     seconds=2.0, samples=4, batches=1, estimated=False)
        >>> trainer_metric_keys(rec, "eval")  # doctest: +NORMALIZE_WHITESPACE
        {'eval_energy_joules': 8.0, 'eval_energy_joules_per_sample': 2.0,
         'eval_energy_watts': 4.0, 'eval_energy_joules_gpu_0': 8.0, 'eval_energy_estimated': 0.0}
    """
    stem = f"{prefix}_energy_" if prefix else "energy_"
    out: dict[str, float] = {}
    for q in METRIC_QUANTITIES:
        v = getattr(rec, q)
        if v is not None and math.isfinite(v):
            out[stem + q] = float(v)
    for d, v in rec.joules_by_domain.items():
        if v is not None and math.isfinite(v):
            out[f"{stem}joules_{domain_name(d)}"] = float(v)
    out[stem + "estimated"] = 1.0 if rec.estimated else 0.0
    return out
